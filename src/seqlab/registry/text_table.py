"""Fixed-width text tables for the registry's descriptions in the MLflow UI.

The model pages render Markdown tables with no cell padding (a cutoff and a score run
together: ``1957-12-010.7644``), so the audit trail and the gate's per-window scores are
written as aligned columns in a code block, which reads the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """``header`` and ``rows`` as aligned columns (those in ``right`` right-aligned), fenced."""
    cells = [list(map(str, header)), *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join(["```text", line(cells[0]), rule, *map(line, cells[1:]), "```"])
