"""A tuning worker with injected faults, for tests that need a real worker process:

python tests/fault_worker.py "*:stall=0.2" --study NAME --storage URL [worker options]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from faults import fault_callbacks, parse  # noqa: E402
from seqlab.tuning.worker import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[2:], extra_callbacks=fault_callbacks(parse(sys.argv[1]))))
