from seqlab.registry import CHAMPION, AliasMove, champion_lineage


def move(seq: int, frm: str | None, to: str, mode: str = "automatic", alias: str = CHAMPION):
    return AliasMove(seq, "2026-01-01T00:00:00Z", alias, frm, to, mode, "why", {})


def test_alias_move_serialises() -> None:
    m = AliasMove(1, "2026-01-01T00:00:00Z", "champion", None, "2", "manual", "why", {"a": 1})
    assert '"to_version": "2"' in m.to_json()


def test_lineage_walks_back_instead_of_flipping() -> None:
    moves = [
        move(1, None, "1"),
        move(2, "1", "2"),
        move(3, "2", "3"),
        move(4, None, "4", alias="challenger"),
    ]
    assert champion_lineage(moves) == ["1", "2", "3"]
    moves.append(move(5, "3", "2", "rollback"))
    assert champion_lineage(moves) == ["1", "2"]  # next rollback goes to v1, not back to v3
    moves.append(move(6, "2", "1", "rollback"))
    assert champion_lineage(moves) == ["1"]


def test_lineage_after_manual_promotion() -> None:
    moves = [
        move(1, None, "1"),
        move(2, "1", "3", "manual"),
        move(3, "3", "1", "rollback"),
        move(4, "1", "5"),
    ]
    assert champion_lineage(moves) == ["1", "5"]


def test_text_tables_align_their_columns() -> None:
    from seqlab.registry.text_table import text_table

    out = text_table(
        ["w", "cutoff", "score"], [[0, "1957-12-01", "0.7644"], [10, "x", "1.5"]], {0, 2}
    )
    lines = out.splitlines()
    assert lines[0] == "```text" and lines[-1] == "```"
    assert lines[1] == " w  cutoff       score"
    assert lines[3] == " 0  1957-12-01  0.7644"  # never "1957-12-010.7644"
    assert lines[4] == "10  x              1.5"
