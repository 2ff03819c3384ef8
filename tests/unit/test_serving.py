"""What the served model tells its callers about its own input."""

from seqlab.registry import serving


def test_a_models_data_encoding_is_its_training_datas_else_utf8() -> None:
    assert serving.data_encoding({"config": {"data": {"encoding": "latin-1"}}}) == "latin-1"
    assert serving.data_encoding({"config": {"data": {"encoding": None}}}) == "utf-8"
    assert serving.data_encoding({}) == "utf-8"  # a model logged before configs were shipped
