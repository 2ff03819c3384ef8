from pathlib import Path

import pytest

from conftest import make_tiny_config
from seqlab.config import (
    ConfigError,
    PipelineConfig,
    apply_overrides,
    build_config,
    flatten,
    load_config,
    parse_override_args,
    with_overrides,
)
from seqlab.pipeline import ingest, prepare_data, validate_data

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((REPO / "conf").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_config_file_loads(path: Path) -> None:
    cfg = load_config(path)
    assert build_config(cfg.model_dump(mode="json")) == cfg  # round-trips as it is logged
    for key, spec in cfg.tune.search_space.items():  # every searched key is a real setting
        value = spec.choices[0] if spec.type == "categorical" else spec.low
        if spec.type == "int":
            value = int(value)
        assert flatten(with_overrides(cfg, {key: value}))[key] == str(value)


def test_default_config_values() -> None:
    cfg = load_config(REPO / "conf/default.yaml")
    assert cfg.data.source == "airpassengers"
    assert cfg.window.horizon == 12
    assert cfg.window.transform == "log"  # from datasets/airpassengers.yaml
    assert set(cfg.tune.search_space) >= {"model.cell", "train.lr"}
    assert cfg.experiment_name == "seqlab-airpassengers"
    assert cfg.model_name == "seqlab-airpassengers"
    assert (cfg.window.val_windows, cfg.val_step, cfg.val_size) == (3, 6, 12 + 2 * 6)


def test_base_yaml_writes_out_exactly_the_code_defaults(tmp_path: Path) -> None:
    # A config that skips seqlab:base.yaml (or Python building one) gets the same settings.
    data = "data: {source: airpassengers}\n"
    (tmp_path / "bare.yaml").write_text(data)
    (tmp_path / "based.yaml").write_text("defaults: [seqlab:base.yaml]\n" + data)
    bare = load_config(tmp_path / "bare.yaml")
    assert bare == load_config(tmp_path / "based.yaml")
    assert (bare.window.scaler, bare.model.ensemble_size, bare.train.loss) == ("mase", 5, "mae")
    assert set(bare.tune.search_space) == {
        "model.cell",
        "model.hidden_size",
        "model.num_layers",
        "train.lr",
        "window.input_size",
    }


def test_a_search_space_in_a_config_replaces_the_default_whole() -> None:
    cfg = load_config(
        REPO / "conf/default.yaml",
        ["tune.search_space={train.lr: {type: float, low: 0.001, high: 0.01}}"],
    )
    assert list(cfg.tune.search_space) == ["train.lr"]
    fresh = build_config({"data": {"source": "airpassengers"}})
    assert len(fresh.tune.search_space) == 5  # each config gets its own copy of the default
    fresh.tune.search_space.pop("train.lr")
    assert len(build_config({"data": {"source": "airpassengers"}}).tune.search_space) == 5


def test_keras_classic_preset() -> None:
    cfg = load_config(REPO / "conf/presets/keras-classic.yaml")
    assert (cfg.model.cell, cfg.model.hidden_size, cfg.model.num_layers) == ("lstm", 50, 1)
    assert cfg.window.horizon == 1
    assert (cfg.train.loss, cfg.train.optimizer, cfg.train.max_epochs, cfg.train.batch_size) == (
        "mse",
        "adam",
        100,
        32,
    )
    assert cfg.tune.n_trials == 0
    assert cfg.model.ensemble_size == 1  # one network, as the example


def test_dotted_overrides_are_typed() -> None:
    cfg = load_config(
        REPO / "conf/default.yaml",
        ["model.cell=gru", "tune.n_trials=30", "train.patience=null", "train.lr=1e-2"],
    )
    assert cfg.model.cell == "gru"
    assert cfg.tune.n_trials == 30
    assert cfg.train.patience is None
    assert cfg.train.lr == pytest.approx(0.01)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("model.cel=gru", "model.cel: unknown key"),
        ("model.cell=transformer", "model.cell"),
        ("train.lr=-1", "train.lr"),
        ("tune.n_trials=many", "tune.n_trials"),
        ("nosuchsection.x=1", "nosuchsection: unknown key"),
        ("window.horizon=0", "window.horizon"),
    ],
)
def test_bad_overrides_name_the_key(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(REPO / "conf/default.yaml", [override])
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_override_without_equals_is_rejected() -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override_args(["model.cell"])


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("nope/missing.yaml")


def test_bad_search_space_is_rejected() -> None:
    with pytest.raises(ConfigError, match="low"):
        load_config(
            None, {"tune.search_space": {"train.lr": {"type": "float", "low": 1, "high": 0.1}}}
        )


def test_with_overrides_returns_validated_copy() -> None:
    cfg = PipelineConfig()
    new = with_overrides(cfg, {"model.hidden_size": 16})
    assert new.model.hidden_size == 16 and cfg.model.hidden_size == 64
    with pytest.raises(ConfigError):
        with_overrides(cfg, {"model.hidden_size": 0})


def test_apply_overrides_does_not_mutate() -> None:
    base = {"model": {"cell": "lstm"}}
    out = apply_overrides(base, {"model.cell": "gru"})
    assert base["model"]["cell"] == "lstm" and out["model"]["cell"] == "gru"


def test_flatten_gives_dotted_string_params() -> None:
    flat = flatten(load_config(REPO / "conf/default.yaml"))
    assert flat["model.cell"] == "lstm"
    assert flat["window.horizon"] == "12"
    assert "tune.search_space" in flat and "model.cell" in flat["tune.search_space"]
    assert all(isinstance(v, str) for v in flat.values())


def test_registry_register_key_round_trips() -> None:
    cfg = load_config(None, ["registry.register=false"])
    assert cfg.registry.register_model is False
    assert with_overrides(cfg, {}).registry.register_model is False


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("window.residual=naive", "window.residual"),
        ("window.pad=sometimes", "window.pad"),
        ("train.windows_per_epoch=0", "train.windows_per_epoch"),
        ("eval.backtest_windows=0", "eval.backtest_windows"),
        ("eval.step=-1", "eval.step"),
        ("registry.serve=latest", "registry.serve"),
        ("window.deseasonalize=yes", "window.deseasonalize"),
        ("window.scaler=robust", "window.scaler"),
        ("window.calendar=sometimes", "window.calendar"),
        ("model.series_embedding=-2", "model.series_embedding"),
        ("model.ensemble_size=0", "model.ensemble_size"),
        (
            "tune.search_space={model.ensemble_size: {type: int, low: 1, high: 5}}",
            "tune.search_space: Value error, model.ensemble_size cannot be searched",
        ),
    ],
)
def test_evaluation_and_modelling_keys_are_validated(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid config: {fragment}"):
        load_config(None, [override])


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["model.quantiles=[0.1, 0.9]", "train.loss=pinball"], "must include 0.5"),
        (["model.quantiles=[0.9, 0.5]", "train.loss=pinball"], "give increasing levels"),
        (["model.quantiles=[0, 0.5]", "train.loss=pinball"], "strictly between 0 and 1"),
        (["model.quantiles=[0.1, 0.5, 0.9]"], "trained with train.loss=pinball"),
        (["train.loss=pinball"], "train.loss=pinball needs model.quantiles"),
    ],
)
def test_quantile_settings_are_checked_together(overrides: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_config(None, overrides)
    ok = load_config(None, ["model.quantiles=[0.1, 0.5, 0.9]", "train.loss=pinball"])
    assert ok.model.quantiles == [0.1, 0.5, 0.9]


@pytest.mark.parametrize(
    "overrides",
    [
        ["window.val_size=5"],  # horizon 12
        ["window.horizon=6", "window.val_size=1"],
        ["window.val_size=11", "tune.n_trials=0", "train.patience=null"],
    ],
)
def test_a_validation_part_shorter_than_the_horizon_is_refused(overrides: list[str]) -> None:
    # It holds no validation window: tuning and early stopping would score the training loss.
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    message = str(err.value)
    assert "\n" not in message
    assert "window.val_size" in message and "window.horizon" in message
    assert "set window.val_size to at least" in message


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["window.val_size=12"],
        ["window.val_size=30"],
        ["window.horizon=6", "window.val_size=null"],
        ["tune.n_trials=0", "train.patience=null"],
        ["tune.n_trials=0", "window.val_size=12"],
    ],
)
def test_a_validation_part_of_at_least_the_horizon_loads(overrides: list[str]) -> None:
    cfg = load_config(None, overrides)
    assert cfg.val_size >= cfg.window.horizon


def test_the_tiny_config_validates_on_at_least_one_window_per_series(tmp_path: Path) -> None:
    cfg = make_tiny_config(tmp_path, **{"window.val_size": 7})  # == horizon: one window
    prepared = prepare_data(validate_data(ingest(cfg), cfg), cfg)
    assert len(prepared.x_val) == 1


def test_relative_data_paths_in_a_config_resolve_against_its_folder(tmp_path, monkeypatch) -> None:
    project = tmp_path / "project"
    (project / "conf").mkdir(parents=True)
    (project / "conf" / "base.yaml").write_text("data: {source: ../data/sales.csv}\n")
    (project / "conf" / "run.yaml").write_text("defaults: [base.yaml]\nname: run\n")
    (project / "conf" / "mine.yaml").write_text("data: {source: mine.parquet}\n")
    monkeypatch.chdir(tmp_path)  # not the project: paths must not depend on it
    assert load_config(project / "conf" / "run.yaml").data.source == str(
        project / "data" / "sales.csv"
    )
    assert load_config(project / "conf" / "mine.yaml").data.source == str(
        project / "conf" / "mine.parquet"
    )
    # a bundled dataset's name, an absolute path, a URL and an override are left as given
    assert load_config(None).data.source == "airpassengers"
    (project / "conf" / "abs.yaml").write_text(f"data: {{source: {tmp_path}/x.csv}}\n")
    assert load_config(project / "conf" / "abs.yaml").data.source == f"{tmp_path}/x.csv"
    (project / "conf" / "url.yaml").write_text("data: {source: 's3://bucket/x.csv'}\n")
    assert load_config(project / "conf" / "url.yaml").data.source == "s3://bucket/x.csv"
    over = load_config(project / "conf" / "run.yaml", ["data.source=here.csv"])
    assert over.data.source == "here.csv"


@pytest.mark.parametrize(
    ("residual", "input_size", "season", "used"),
    [
        ("auto", 24, 12, "seasonal_naive"),
        ("auto", 12, 12, "seasonal_naive"),
        ("auto", 13, 52, "none"),  # the input window holds no season
        ("auto", 24, 1, "none"),  # no season: seasonal naive is naive, which local_norm has
        ("none", 24, 12, "none"),
        ("seasonal_naive", 13, 52, "seasonal_naive"),  # as set (prepare refuses it, one line)
    ],
)
def test_residual_auto_resolves_against_the_season(residual, input_size, season, used) -> None:
    cfg = load_config(None, [f"window.residual={residual}", f"window.input_size={input_size}"])
    assert cfg.residual_for(season) == used
