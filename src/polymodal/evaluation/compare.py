"""Compare each single modality and each fusion method on one fixed split, over several seeds.

Every variant is trained by the same ``Predictor.fit`` on the same training rows and scored on the same test rows,
so differences come from the variant alone (and the seed, which is why there are several).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import PolymodalConfig
from ..data.progress import Progress
from ..data.readers import Table, read_table
from ..errors import ConfigError
from ..fitting import fit_pipeline, split_rows
from ..io import atomic_file
from ..model import count_parameters
from ..pipeline import labelled_rows
from ..presets import ENSEMBLE_PRESETS, PRESETS
from ..registry import FUSIONS
from ..schema import infer_problem_type, infer_schema
from ..training.distributed import check_one_process

log = logging.getLogger("polymodal")


@dataclass
class Variant:
    name: str
    kind: str  # "modality" | "fusion" | "preset"
    fusion: str
    ignore: list[str]
    preset: str | None = None  # a one-network preset (e.g. robust), applied as fit --preset does


def _variants(
    frame: pd.DataFrame,
    label: str,
    cfg: PolymodalConfig,
    fusions: list[str],
    single_modalities: bool,
    presets: Sequence[str] = (),
) -> list[Variant]:
    schema = infer_schema(frame, label, cfg.columns, cfg.ignore)
    out = []
    if single_modalities:
        inputs = schema.input_columns()
        for m in schema.modalities():
            out.append(Variant(f"{m.name} only", "modality", "concat", [c for c in inputs if c not in m.columns]))
    out += [Variant(f"fusion: {f}", "fusion", f, []) for f in fusions]
    out += [Variant(f"preset: {p}", "preset", cfg.fusion.name, [], p) for p in presets]
    return out


def resolve_fusions(fusions: str | list[str] | None) -> list[str]:
    if fusions is None or fusions == "all":
        return FUSIONS.names()
    names = [f.strip() for f in fusions.split(",")] if isinstance(fusions, str) else list(fusions)
    for n in names:
        FUSIONS.get(n)  # raises ConfigError listing the choices
    if not names:
        raise ConfigError("no fusion methods to compare")
    return names


def _split(
    table: Table, label: str, cfg: PolymodalConfig, test_data: Any, test_fraction: float, data_root: Any
) -> tuple[Table, Table]:
    """The training and test tables: ``test_data`` when given, else a split of the labelled rows by polymodal's one
    split rule (stratified for classification; by ``training.group_column`` when set)."""
    if test_data is not None:
        return table, read_table(test_data, data_root)
    frame = labelled_rows(table.frame, label, "comparison")
    problem_type = cfg.task.problem_type or infer_problem_type(frame[label], cfg.task.tag_separator)[0]
    strata = pd.factorize(frame[label], sort=True)[0] if problem_type in ("binary", "multiclass") else None
    group = cfg.training.group_column
    train, test = split_rows(
        len(frame), test_fraction, cfg.training.seed, strata, None if group is None else frame[group]
    )
    return (Table(frame.iloc[train], table.root, table.source), Table(frame.iloc[test], table.root, table.source))


def compare(
    data: Any,
    label: str,
    *,
    fusions: str | list[str] | None = "all",
    seeds: int = 1,
    test_data: Any = None,
    test_fraction: float = 0.2,
    single_modalities: bool = True,
    presets: Sequence[str] = (),
    config: Any = None,
    data_root: Any = None,
    time_limit_per_run: float | None = None,
    out_dir: str | Path | None = None,
    keep_runs: bool = False,
    resume: bool = False,
    verbose: bool = True,
) -> pd.DataFrame:
    """Train every variant ``seeds`` times; return one row per variant with mean and std of the test metrics.

    Columns: variant, kind, the primary metric's mean/std (accuracy or rmse), every other metric's mean,
    parameters, fit_seconds, infer_ms_per_row. With ``out_dir``, also writes compare.csv, compare.md and compare.png,
    and appends each finished run to ``runs.jsonl`` as it ends; ``resume=True`` reuses the runs found there that
    were made with the same data and settings. ``keep_runs=True`` saves every trained model under
    ``out_dir/runs/<variant>-seed<k>``. Files are decoded once and shared by all runs. ``presets``: one-network
    presets (e.g. ``["robust"]``) to compare as variants ``preset: <name>`` beside the fusions.
    """
    from ..data.dataset import shared_decoding

    if seeds < 1:
        raise ConfigError("seeds must be at least 1")
    if (keep_runs or resume) and out_dir is None:
        raise ConfigError("keep_runs and resume need an output directory (out_dir / --out)")
    if time_limit_per_run is not None and not time_limit_per_run > 0:
        raise ConfigError(f"time_limit_per_run must be a positive number of seconds, got {time_limit_per_run}")
    fusion_names = resolve_fusions(fusions)  # a typo fails before the table is read
    cfg = PolymodalConfig.from_any(config)
    check_one_process(cfg.training, "compare")
    table = read_table(data, data_root if data_root is not None else cfg.data_root)
    train, test = _split(table, label, cfg, test_data, test_fraction, data_root)
    for p in presets:
        if p not in PRESETS or p in ENSEMBLE_PRESETS:
            one = [q for q in PRESETS if q not in ENSEMBLE_PRESETS]
            raise ConfigError(f"compare: preset '{p}' is not a one-network preset; choose from {', '.join(one)}")
    variants = _variants(train.frame, label, cfg, fusion_names, single_modalities, presets)
    log_file = None if out_dir is None else Path(out_dir) / "runs.jsonl"
    settings = _fingerprint(cfg, label, train, test, time_limit_per_run)
    done = _finished_runs(log_file, settings) if resume else {}
    runs = []
    # every run is long: a line (or the bar) after each one, also when the output goes to a file
    bar = Progress(len(variants) * seeds, "compare", "runs", enabled=verbose, min_bar=0)
    with shared_decoding():
        for seed in range(seeds):  # seed-major: a first full picture of every variant comes early
            for v in variants:
                bar.set_postfix_str(f"{v.name}, seed {seed}")
                if (v.name, seed) in done:
                    runs.append(done[(v.name, seed)])
                    bar.advance()
                    continue
                run = _run_variant(
                    v,
                    seed,
                    cfg,
                    label,
                    train,
                    test,
                    time_limit_per_run,
                    None
                    if not keep_runs or out_dir is None
                    else Path(out_dir) / "runs" / f"{_slug(v.name)}-seed{seed}",
                )
                runs.append(run)
                if log_file is not None:
                    _append_run(log_file, {**run, "settings": settings})
                bar.advance()
    bar.close()
    table_out = summarise(pd.DataFrame(runs))
    if out_dir is not None:
        write_outputs(table_out, Path(out_dir), seeds)
    return table_out


def _run_variant(
    v: Variant,
    seed: int,
    cfg: PolymodalConfig,
    label: str,
    train: Table,
    test: Table,
    time_limit: float | None,
    save_to: Path | None,
) -> dict[str, Any]:
    """Fit one variant with the same fitting steps as ``Predictor.fit`` and score it on the test rows."""
    run_cfg = cfg.model_copy(deep=True)
    run_cfg.fusion.name = v.fusion
    run_cfg.ignore = list(dict.fromkeys(run_cfg.ignore + v.ignore))
    run_cfg.training.seed = seed
    if run_cfg.training.logger != "none":  # one tracked run per variant and seed (training.logger)
        run_cfg.training.run_name = f"{run_cfg.training.run_name or 'compare'}-{v.name}-seed{seed}"
    if time_limit is not None:
        run_cfg.training.time_limit = time_limit
    start = time.perf_counter()
    pipeline = fit_pipeline(
        Table(train.frame, train.root, train.source), label, run_cfg, verbose=False, preset=v.preset
    ).pipeline
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    metrics = pipeline.evaluate(Table(test.frame, test.root, test.source))
    infer = (time.perf_counter() - start) / max(metrics["rows"], 1)
    if save_to is not None:
        pipeline.save(save_to)
    return {
        "variant": v.name,
        "kind": v.kind,
        "seed": seed,
        **metrics,
        "parameters": count_parameters(pipeline.model),
        "fit_seconds": fit_seconds,
        "infer_ms_per_row": 1000 * infer,
        "primary": pipeline.task.monitor[0],
    }


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").replace("--", "-")


def _fingerprint(cfg: PolymodalConfig, label: str, train: Table, test: Table, time_limit: float | None) -> str:
    """What a run's result depends on besides variant and seed; resumed runs must match it.

    The config counts by the values set explicitly, so that a new option with a default (a later polymodal
    version) does not orphan the runs already logged.
    """
    h = hashlib.sha256()
    for part in (cfg.model_dump_json(exclude_defaults=True), label, str(time_limit), str(train.root), str(test.root)):
        h.update(part.encode() + b"\0")
    for frame in (train.frame, test.frame):
        h.update(pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def _finished_runs(log_file: Path | None, settings: str) -> dict[tuple[str, int], dict[str, Any]]:
    if log_file is None or not log_file.exists():
        return {}
    done = {}
    for number, line in enumerate(log_file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            run = json.loads(line)
            key = (run["variant"], run["seed"])
        except (json.JSONDecodeError, KeyError, TypeError):
            # a line torn by a writer killed mid-write (the next append starts a new line): that run is redone
            log.warning(
                "%s, line %d: an incomplete record (interrupted write), skipped; that run is redone", log_file, number
            )
            continue
        if run.pop("settings", None) == settings:
            done[key] = run
    return done


def _append_run(log_file: Path, run: dict[str, Any]) -> None:
    """Append one record as one line in a single ``write`` on an ``O_APPEND`` descriptor, so that concurrent or
    interrupted writers never interleave inside a line; a line torn by a killed writer is ended first, so that it
    cannot swallow this record."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(run, default=float) + "\n").encode("utf-8")
    fd = os.open(log_file, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        written = os.write(fd, line)
        while written < len(line):  # a short write (a full disk, a signal): finish the line
            written += os.write(fd, line[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per variant, in first-run order: mean and std of the primary metric over seeds, and more."""
    primary = runs["primary"].iloc[0]
    metrics = [
        c
        for c in runs.columns
        if c not in ("variant", "kind", "seed", "primary", "rows", "parameters", "fit_seconds", "infer_ms_per_row")
    ]
    rows = []
    for (variant, kind), g in runs.groupby(["variant", "kind"], sort=False):
        row = {
            "variant": variant,
            "kind": kind,
            f"{primary}_mean": g[primary].mean(),
            f"{primary}_std": g[primary].std(ddof=1) if len(g) > 1 else 0.0,
        }
        row.update({f"{m}_mean": g[m].mean() for m in metrics if m != primary})
        row.update(
            {
                "parameters": int(g["parameters"].iloc[0]),
                "fit_seconds": g["fit_seconds"].mean(),
                "infer_ms_per_row": g["infer_ms_per_row"].mean(),
                "seeds": len(g),
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


def write_outputs(summary: pd.DataFrame, out_dir: Path, seeds: int) -> None:
    from ..plotting import subplots  # drawn without pyplot: the caller's matplotlib backend stays as it was

    out_dir.mkdir(parents=True, exist_ok=True)
    primary = summary.columns[2].removesuffix("_mean")
    with atomic_file(out_dir / "compare.csv", "w", newline="", encoding="utf-8") as f:
        summary.to_csv(f, index=False)
    lines = [
        f"| variant | {primary} (mean ± std, {seeds} seeds) | parameters | fit s | inference ms/row |",
        "|---|---|---|---|---|",
    ]
    for _, r in summary.iterrows():
        lines.append(
            f"| {r['variant']} | {r[f'{primary}_mean']:.4f} ± {r[f'{primary}_std']:.4f} | "
            f"{r['parameters']:,} | {r['fit_seconds']:.1f} | {r['infer_ms_per_row']:.3f} |"
        )
    with atomic_file(out_dir / "compare.md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    fig, ax = subplots(figsize=(max(6, 0.8 * len(summary) + 2), 4.5))
    colours = ["#8c9eb5" if k == "modality" else "#2f6db5" for k in summary["kind"]]
    ax.bar(summary["variant"], summary[f"{primary}_mean"], yerr=summary[f"{primary}_std"], color=colours, capsize=4)
    ax.set_ylabel(f"test {primary} (mean ± std over {seeds} seeds)")
    ax.set_title("Single modalities (grey) and fusion methods (blue), same split")
    ax.tick_params(axis="x", rotation=35)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    fig.tight_layout()
    with atomic_file(out_dir / "compare.png", "wb") as f:
        fig.savefig(f, format="png", dpi=120)
