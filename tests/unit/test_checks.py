"""Reading the configured data: once per process while the file does not change."""

from __future__ import annotations

from seqlab.data import checks


def test_a_file_is_read_once_and_handed_on_until_it_changes(tiny_config, monkeypatch) -> None:
    cfg = tiny_config()
    reads = []
    real = checks.load_raw
    monkeypatch.setattr(checks, "load_raw", lambda *a, **k: reads.append(a) or real(*a, **k))
    first = checks.ingest(cfg)
    first.loc[0, "y"] = -1.0  # a caller changing its frame does not change what others get
    again = checks.ingest(cfg)
    assert len(reads) == 1 and again.loc[0, "y"] != -1.0
    with open(cfg.data.source, "a") as f:  # the file changes: read anew
        f.write("2024-03-31,99.0\n")
    changed = checks.ingest(cfg)
    assert len(reads) == 2 and len(changed) == len(again) + 1
