import pytest
import torch

from seqlab.models import (
    EnsembleForecaster,
    RecurrentForecaster,
    count_parameters,
    from_hparams,
    point_index,
)


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


def test_ensemble_forecasts_the_median_of_its_members() -> None:
    members = [RecurrentForecaster(1, 3, "gru", hidden_size=4) for _ in range(3)]
    for k, m in enumerate(members):  # member k always forecasts k (+ 10 for the third step)
        for p in m.parameters():
            torch.nn.init.zeros_(p)
        m.head.bias.data = torch.tensor([k, k, 10.0 * k])
    ens = EnsembleForecaster(members)
    out = ens(torch.randn(5, 6, 1))
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0, 10.0]]).expand(5, 3))
    assert ens.hparams["ensemble_size"] == 3
    two = EnsembleForecaster(members[:2])(torch.randn(2, 6, 1))  # two: the lower, not the mean
    torch.testing.assert_close(two, torch.tensor([[0.0, 0.0, 0.0]]).expand(2, 3))


class _Levels(RecurrentForecaster):
    """A member forecasting exp of what its parent class forecasts (a log model decoded)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(super().forward(x))


def _members(k: int, cls: type = RecurrentForecaster, **kwargs) -> list:
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(cls(1, 3, "gru", hidden_size=4, **kwargs).eval())
    return out


@pytest.mark.parametrize("k", [2, 3, 4])
def test_the_ensemble_median_is_one_member_at_every_point(k: int) -> None:
    members = _members(k)
    x = torch.randn(16, 6, 1)
    with torch.no_grad():
        outs = torch.stack([m(x) for m in members])  # (K, batch, horizon)
        median = EnsembleForecaster(members)(x)
    assert ((outs == median).sum(dim=0) >= 1).all()  # an order statistic, never an average
    below = (outs < median).sum(dim=0)
    assert (below <= (k - 1) // 2).all() and ((outs <= median).sum(dim=0) >= (k + 1) // 2).all()


@pytest.mark.parametrize("k", [2, 4])
def test_the_ensemble_median_commutes_with_decoding(k: int) -> None:
    # exp(median(log x)) == median(x): the median taken in log space, decoded, is the median of
    # the decoded members (averaging two middle members would give their geometric mean).
    logs = EnsembleForecaster(_members(k))
    levels = EnsembleForecaster(_members(k, _Levels))
    x = torch.randn(16, 6, 1)
    with torch.no_grad():
        torch.testing.assert_close(torch.exp(logs(x)), levels(x))


def test_an_ensemble_of_quantile_models_keeps_each_level_a_member_and_uncrossed() -> None:
    members = _members(4, quantiles=[0.1, 0.5, 0.9])
    x = torch.randn(16, 6, 1)
    with torch.no_grad():
        outs = torch.stack([m(x) for m in members])  # (K, batch, horizon, Q)
        median = EnsembleForecaster(members)(x)
    assert median.shape == (16, 3, 3)
    assert ((outs == median).sum(dim=0) >= 1).all()
    assert (median.diff(dim=-1) >= 0).all()


def test_from_hparams_rebuilds_single_models_and_ensembles() -> None:
    single = RecurrentForecaster(2, 4, "lstm", hidden_size=5)
    assert type(from_hparams(single.hparams)) is RecurrentForecaster
    ens = EnsembleForecaster([RecurrentForecaster(2, 4, "lstm", hidden_size=5) for _ in range(2)])
    rebuilt = from_hparams(ens.hparams)
    rebuilt.load_state_dict(ens.state_dict())  # same parameter names and shapes
    x = torch.randn(3, 7, 2)
    torch.testing.assert_close(rebuilt(x), ens(x))
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleForecaster([])


def test_quantile_head_forecasts_sorted_levels_per_step() -> None:
    m = RecurrentForecaster(1, 4, "lstm", hidden_size=6, quantiles=[0.1, 0.5, 0.9])
    x = torch.randn(5, 8, 1)
    m.train()
    assert m(x).shape == (5, 4, 3)
    m.eval()
    out = m(x)
    assert torch.all(out[..., :-1] <= out[..., 1:])  # never crossing outside training
    assert point_index(m) == 1 and point_index(RecurrentForecaster(1, 4)) is None
    rebuilt = from_hparams(m.hparams)
    rebuilt.load_state_dict(m.state_dict())
    torch.testing.assert_close(rebuilt.eval()(x), out)
    with pytest.raises(ValueError, match="include 0.5"):
        RecurrentForecaster(1, 4, quantiles=[0.1, 0.9])


def test_series_embedding_reads_the_index_column_and_rebuilds() -> None:
    torch.manual_seed(0)
    m = RecurrentForecaster(1, 3, "gru", hidden_size=4, n_series=3, series_embedding=2).eval()
    x = torch.randn(1, 6, 1).repeat(3, 1, 1)
    ids = torch.arange(3.0).view(3, 1, 1).expand(3, 6, 1)
    out = m(torch.cat([x, ids], dim=2))  # the same inputs, three identities
    assert out.shape == (3, 3) and not torch.allclose(out[0], out[1])
    assert m.hparams["n_series"] == 3 and m.hparams["series_embedding"] == 2
    rebuilt = from_hparams(m.hparams)
    rebuilt.load_state_dict(m.state_dict())
    torch.testing.assert_close(rebuilt.eval()(torch.cat([x, ids], dim=2)), out)
