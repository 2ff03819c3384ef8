import pytest
import torch

from seqlab.models import RecurrentForecaster, count_parameters


@pytest.mark.parametrize(
    "cell, rnn_cls", [("rnn", torch.nn.RNN), ("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU)]
)
def test_cells_and_output_shape(cell: str, rnn_cls: type) -> None:
    m = RecurrentForecaster(
        n_features=3, horizon=7, cell=cell, hidden_size=16, num_layers=2, dropout=0.1
    )
    assert isinstance(m.rnn, rnn_cls)
    out = m(torch.randn(5, 11, 3))
    assert out.shape == (5, 7)


def test_rnn_is_the_elman_cell() -> None:
    """h_t = tanh(W_hh h_{t-1} + W_xh x_t + b_h), head on the last hidden state."""
    torch.manual_seed(0)
    m = RecurrentForecaster(1, 1, "rnn", hidden_size=4)
    x = torch.randn(2, 5, 1)
    h = torch.zeros(2, 4)
    r = m.rnn
    for t in range(5):
        h = torch.tanh(
            x[:, t] @ r.weight_ih_l0.T + r.bias_ih_l0 + h @ r.weight_hh_l0.T + r.bias_hh_l0
        )
    torch.testing.assert_close(m(x), m.head(h))


def test_unknown_cell() -> None:
    with pytest.raises(ValueError, match="unknown cell"):
        RecurrentForecaster(1, 1, "transformer")  # type: ignore[arg-type]


def test_keras_classic_size() -> None:
    # LSTM(50) on 1 feature + Dense(1): 4*(50*(1+50)+50) (+50*4 torch's 2nd bias) + 51
    m = RecurrentForecaster(1, 1, "lstm", hidden_size=50)
    assert count_parameters(m) == 4 * (50 * 1 + 50 * 50 + 2 * 50) + 51
