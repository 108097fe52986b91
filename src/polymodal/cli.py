"""The ``polymodal`` command. Every user error prints a message naming the problem and exits with code 2."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table as RichTable
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from .errors import PolymodalError, cli_terms
from .threads import quiet_openmp

# Before torch is imported (the commands import it lazily): OpenMP reads its wait policy once, as torch loads it.
quiet_openmp()

# Help-text tokens filled in from the parameter registries when a command's help is shown (not at import: the
# registries import pydantic, and `polymodal --help` should stay quick).
FUSIONS, PROBLEM_TYPES = "<fusions>", "<problem-types>"


def _choices(token: str) -> str:
    if token == FUSIONS:
        from .params.fusion import FUSION_PARAMS

        return ", ".join(FUSION_PARAMS.names())
    from .params.tasks import TASK_PARAMS

    return ", ".join(TASK_PARAMS.names())


class _HelpStyle:
    """How every polymodal command and group shows its help (typer's own rendering, with three changes): an on/off
    flag is shown without a value type (typer >= 0.2x shows ``--quiet <bool>``, as if it took a value), the usage
    line names arguments ``RUN DATA`` (not ``{run} {data}``), and the registry tokens in help texts become the
    registered names."""

    def get_params(self, ctx: Any) -> Any:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for p in params:
            if isinstance(p, TyperOption) and p.is_flag and p.metavar is None:
                p.metavar = ""  # typer shows an option's metavar in place of its type
        return params

    def collect_usage_pieces(self, ctx: Any) -> Any:
        pieces: list[str] = super().collect_usage_pieces(ctx)  # type: ignore[misc]
        for p in self.get_params(ctx):
            if isinstance(p, TyperArgument):
                name = p.display_name_raw.upper()
                shown = (name if p.required else f"[{name}]") + ("..." if p.nargs != 1 else "")
                pieces = [shown if piece in p.get_usage_pieces(ctx) else piece for piece in pieces]
        return pieces

    def format_help(self, ctx: Any, formatter: Any) -> Any:
        for p in self.get_params(ctx):
            for token in (FUSIONS, PROBLEM_TYPES):
                if isinstance(p, TyperOption | TyperArgument) and p.help and token in p.help:
                    p.help = p.help.replace(token, _choices(token))
        super().format_help(ctx, formatter)  # type: ignore[misc]


class _Command(_HelpStyle, TyperCommand):
    pass


class _Group(_HelpStyle, TyperGroup):
    pass


class _Typer(typer.Typer):
    """A typer app whose commands and sub-apps show their help in polymodal's style (:class:`_HelpStyle`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=kwargs.pop("cls", None) or _Group, **kwargs)

    def command(self, name: str | None = None, **kwargs: Any) -> Any:
        return super().command(name, cls=kwargs.pop("cls", None) or _Command, **kwargs)


app = _Typer(
    name="polymodal",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    help="Multimodal machine learning from a table: image/audio paths, text, numbers and categories in; "
    "a trained, saved model out.\n\nStart with [bold]polymodal demo[/bold], or "
    "[bold]polymodal info data.csv[/bold] to see how your columns are read.",
)


def _print_version(value: bool) -> None:
    if value:
        from .version import __version__

        typer.echo(f"polymodal {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", help="Print polymodal's version and exit.", callback=_print_version, is_eager=True
    ),
) -> None:
    # The group's options (a callback with no docstring, so the app's help= above stays its help text).
    pass


# Markup off: what is printed is mostly user text (column names, paths, error messages), where rich would take
# "[x]" for a tag and drop it. A styled literal opts in with markup=True and escapes any user text it carries.
out = Console(markup=False)
err = Console(stderr=True, markup=False)

LabelOpt = typer.Option(
    ...,
    "--label",
    "-l",
    help="Name of the target column; several, comma-separated (--label rating,recommended), train one "
    "multi-task model with a head per target.",
)
DataRootOpt = typer.Option(
    None, "--data-root", help="Folder relative file paths resolve against (default: the table's own folder)."
)
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML/JSON config file (docs/USER_GUIDE.md, section 3).")


def _on_error_choice(value: str | None) -> str | None:
    """Checks --on-error as the command line is parsed, before any table is read."""
    choices = ("fail", "skip", "missing")
    if value is not None and value not in choices:
        raise typer.BadParameter(f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def _positive(value: float | None) -> float | None:
    """Checks a number of seconds as the command line is parsed (typer's min= cannot exclude 0)."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"must be a positive number of seconds, got {value}")
    return value


# numpy, torch and Lightning take seeds from 0 to 2**32 - 1 (polymodal.config.SEED_MAX, not imported: it is slow)
SEED_MAX = 2**32 - 1

OnErrorOpt = typer.Option(
    None,
    "--on-error",
    help="Bad rows: 'fail' (default), 'skip' them, or treat bad cells as 'missing'. A row whose model output is "
    "NaN or inf gets no prediction: an error under fail, else left out with a warning.",
    callback=_on_error_choice,
)
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars or info messages.")
ThreadsOpt = typer.Option(
    None,
    "--threads",
    min=1,
    help="Threads for torch, decoding and ONNX Runtime (default: the config's training.threads, else "
    "$POLYMODAL_THREADS, else $OMP_NUM_THREADS, else the cores this process may use: CPU affinity and cgroup quota).",
)


def _devices_option(value: str | None) -> str | None:
    """Checks --devices as the command line is parsed: auto, a number, or comma-separated device ids."""
    if value is None or value == "auto" or value.lstrip("-").isdigit():
        return value
    if all(part.strip().isdigit() for part in value.split(",")):
        return value
    raise typer.BadParameter(f"expected auto, a number of devices (-1: all) or device ids such as 0,1; got {value!r}")


def _with_distribution(cfg: Any, devices: str | None, strategy: str | None, num_nodes: int | None) -> Any:
    """``cfg`` with the --devices / --strategy / --num-nodes options in its training section (checked there)."""
    from .config import PolymodalConfig

    if devices is None and strategy is None and num_nodes is None:
        return cfg
    data = cfg.to_dict()
    if devices is not None:
        data["training"]["devices"] = (
            devices if devices == "auto" else [int(d) for d in devices.split(",")] if "," in devices else int(devices)
        )
    if strategy is not None:
        data["training"]["strategy"] = strategy
    if num_nodes is not None:
        data["training"]["num_nodes"] = num_nodes
    return PolymodalConfig.from_any(data)


def _with_tracking(cfg: Any, logger: str | None, tracking_dir: str | None) -> Any:
    """``cfg`` with the --logger / --tracking-dir options in its training section (checked there, and the logger's
    package looked for, before any table is read)."""
    from .config import PolymodalConfig
    from .training.tracking import check_logger

    if logger is None and tracking_dir is None:
        return cfg
    data = cfg.to_dict()
    if logger is not None:
        data["training"]["logger"] = logger
    if tracking_dir is not None:
        data["training"]["tracking_dir"] = tracking_dir
    cfg = PolymodalConfig.from_any(data)
    check_logger(cfg.training)
    return cfg


LoggerOpt = typer.Option(
    None,
    "--logger",
    help="Experiment tracking (training.logger): none, csv, tensorboard or mlflow. Logs the config, per-epoch "
    "metrics and (mlflow) the run directory; tensorboard and mlflow need `pip install 'polymodal[tracking]'`.",
)
TrackingDirOpt = typer.Option(
    None,
    "--tracking-dir",
    help="Where tracked runs go (training.tracking_dir): a folder (default ./mlruns, ./tensorboard or ./csv_logs), "
    "or for mlflow a tracking URI such as sqlite:///mlflow.db.",
)


DevicesOpt = typer.Option(
    None,
    "--devices",
    help="Devices per machine: auto (default: every GPU, else one CPU process), a number (-1: all) or ids such as "
    "0,1. Above 1, one training process per device (see --strategy); only the first writes --out.",
    callback=_devices_option,
)
StrategyOpt = typer.Option(
    None,
    "--strategy",
    help="Lightning strategy: auto (DDP on several devices), ddp (re-runs this command once per device), "
    "ddp_find_unused_parameters_true, ddp_spawn, fsdp, deepspeed (docs/USER_GUIDE.md, 'Several devices').",
)
NumNodesOpt = typer.Option(
    None, "--num-nodes", min=1, help="Machines taking part (run the command on each, e.g. with srun or torchrun)."
)


def _chunk_rows(value: int | None) -> int | None:
    """Checks --chunk-rows as the command line is parsed."""
    if value is not None and value < 1:
        raise typer.BadParameter(f"must be at least 1 row, not {value}")
    return value


ChunkRowsOpt = typer.Option(
    None,
    "--chunk-rows",
    help="Rows read, decoded and predicted at a time (default 8192): memory grows with it, not with the table.",
    callback=_chunk_rows,
)


def _setup_logging(quiet: bool) -> None:
    log = logging.getLogger("polymodal")
    log.handlers[:] = [RichHandler(console=err, show_time=False, show_path=False, markup=False)]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def handles_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn polymodal's own errors into a message on stderr and exit code 2 (no traceback); SIGINT and SIGTERM into
    a one-line message saying what was kept and exit code 130 / 143 (after the atomic writes have cleaned up)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .ranks import is_main_process
        from .signals import Interrupted, stop_on_signals

        # the other processes of a DDP run report problems only: rank 0 prints the progress
        _setup_logging(kwargs.get("quiet", False) or not is_main_process())
        _outputs.clear()
        try:
            with stop_on_signals():
                try:
                    # messages name options as the command line spells them; --threads for the command
                    with cli_terms(), _threads_for(fn, kwargs):
                        return fn(*args, **kwargs)
                except BaseException as e:  # re-raised unless it is one of ours or a stop signal
                    _exit_for(e)
                    raise
        except Interrupted as e:  # in the instant after the command returned
            err.print(_interrupt_message(e.signum), soft_wrap=True, highlight=False)
            raise typer.Exit(e.exit_code) from None

    return wrapper


def _threads_for(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """--threads (and the thread count it resolves to) for a command that computes; nothing for the others."""
    import contextlib

    from .threads import for_command

    if "threads" not in inspect.signature(fn).parameters:
        return contextlib.nullcontext()
    return for_command(kwargs.get("threads"))


def _exit_for(e: BaseException) -> None:
    """Raise the exit a command's exception stands for: a stop signal (even when the exception raised while
    stopping is another one) or one of polymodal's errors; return for anything else (a bug: its traceback shows)."""
    import signal

    from .signals import received

    signum = received()
    if signum is None and isinstance(e, KeyboardInterrupt):
        signum = getattr(e, "signum", signal.SIGINT)
    if signum is not None:
        err.print(_interrupt_message(signum), soft_wrap=True, highlight=False)
        raise typer.Exit(128 + signum) from None
    if isinstance(e, PolymodalError):
        err.print(f"[bold red]error:[/bold red] {escape(str(e))}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


class _Output:
    """An output path of the running command, as it was before the command (for the interrupt message)."""

    def __init__(self, path: Path, kept: str | None, optional: bool = False) -> None:
        self.path, self.kept, self.before = path, kept, _fingerprint(path)
        #: named only when it is there after the signal (fit's checkpoint folder)
        self.optional = optional


#: the running command's outputs, checked by :func:`_check_output` before any work
_outputs: list[_Output] = []


def _fingerprint(path: Path) -> tuple[int, int] | None:
    """(inode, modification time) of ``path``, None when absent: a replaced file or folder, or a folder something
    was written into, has another."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _interrupt_message(signum: int) -> str:
    """One line: the signal, and for each output path whether it was left alone, written whole, or what it kept."""
    import signal

    parts = []
    for o in _outputs:
        now = _fingerprint(o.path)
        if o.optional and now is None:
            continue
        if now == o.before:
            parts.append(f"nothing was written to {o.path}" if now is None else f"{o.path} was left as it was")
        else:
            parts.append(o.kept or f"{o.path} was written completely before the signal came")
    return f"interrupted by {signal.Signals(signum).name}: " + ("; ".join(parts) or "nothing was written")


def _check_output(path: Path | None, option: str = "--out", folder: bool = False, kept: str | None = None) -> None:
    """Check before any work that ``path`` (a file, or a ``folder``) can be written: not under a file, in a folder
    this user may write in, and not a folder where a file is expected (or the reverse); raise :class:`OutputError`
    naming ``option`` otherwise. ``kept``: what an interrupted command leaves there once it has started writing
    (tune's study journal), for the interrupt message; by default the outputs are written whole or not at all."""
    import os

    from .errors import OutputError

    if path is None:
        return
    if path.exists():
        if folder and not path.is_dir():
            raise OutputError(f"{option} {path} is a file, not a folder; choose another {option}")
        if not folder and path.is_dir():
            raise OutputError(f"{option} {path} is a folder; give the name of a file to write, e.g. {path / 'out'}")
        if folder and not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(f"{option} {path}: no permission to write in this folder; choose another {option}")
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{option} {path}: {parent} is a file, not a folder; choose an {option} outside it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: no permission to write in {parent}; choose another {option}")
    _outputs.append(_Output(path, kept))


def _checked_config(
    config: Any, fusion: str | None = None, problem_type: str | None = None, encoders: list[str] | None = None
) -> Any:
    """The config (a path, a dict or None) read and checked against the registered components before any table is
    read, so that a typo exits 2 at once; ``fusion``, ``problem_type`` and ``encoders`` (the options; each
    ``KIND_OR_COLUMN=NAME``) replace the configured ones first, as the Predictor's keyword arguments do."""
    from .components import check_config
    from .config import apply_choices

    cfg = apply_choices(
        config, fusion=fusion or None, encoders=_encoder_options(encoders or []), problem_type=problem_type or None
    )
    check_config(cfg)
    return cfg


def _encoder_options(values: list[str]) -> dict[str, str]:
    """``--encoder KIND_OR_COLUMN=NAME`` options as a mapping (the last one wins for a key)."""
    from .errors import ConfigError

    out = {}
    for value in values:
        key, sep, name = value.partition("=")
        if not sep or not key.strip() or not name.strip():
            raise ConfigError(
                f"--encoder {value!r}: expected KIND_OR_COLUMN=NAME, e.g. --encoder text=text_transformer or "
                "--encoder review=text_transformer"
            )
        out[key.strip()] = name.strip()
    return out


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _labels(value: str) -> str | list[str]:
    """``--label``: one column, or several comma-separated (a multi-task model)."""
    if "," not in value:
        return value
    return [v.strip() for v in value.split(",")]  # empty names are kept: the label check names the problem


def _metrics_table(title: str, metrics: dict[str, float]) -> RichTable:
    t = RichTable(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in metrics.items():
        t.add_row(k, f"{int(v)}" if k == "rows" else f"{v:.4f}")
    return t


def _board_table(title: str, board: Any) -> RichTable:
    """A leaderboard (one row per member; the names say their modalities and fusion) with its scores and weights;
    the CSV (``polymodal leaderboard --out``) has every column."""
    cols = [c for c in ("member", "model", "kind", "weight", "score_val", "score_test", "status") if c in board.columns]
    t = RichTable(title=title)
    for c in cols:
        numeric = c in ("weight", "score_val", "score_test")
        t.add_column(c.replace("score_", ""), justify="right" if numeric else "left", no_wrap=c != "status")
    for row in board.to_dict("records"):
        cells = []
        for c in cols:
            v = row[c]
            cells.append("" if v is None or v != v else f"{v:.4f}" if isinstance(v, float) else str(v))
        t.add_row(*cells)
    return t


@app.command()
@handles_errors
def leaderboard(
    run: Path = typer.Argument(..., help="Run directory from `polymodal fit` (an ensemble lists every member)."),
    data: Path = typer.Argument(..., help="Labelled test table."),
    out_file: Path | None = typer.Option(None, "--out", "-o", help="CSV to write the full table to (every metric)."),
    data_root: Path | None = DataRootOpt,
    on_error: str | None = OnErrorOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Score a run's models on a labelled table: one row per ensemble member and one for the ensemble (or one row
    for a single network), with validation and test scores and the ensemble weights, best test score first."""
    from .api import Predictor
    from .io import atomic_file

    _check_output(out_file)
    p = Predictor.load(run, verbose=not quiet)
    board = p.leaderboard(data, data_root=data_root, on_error=on_error)
    assert p.task is not None, "a loaded Predictor has its task"
    out.print(_board_table(f"leaderboard of {run} on {data} (score: {p.task.monitor[0]})", board))
    if out_file is not None:
        with atomic_file(out_file, "w", newline="", encoding="utf-8") as f:
            board.to_csv(f, index=False)
        err.print(f"wrote {out_file}")


@app.command()
@handles_errors
def info(
    data: Path = typer.Argument(..., help="Table: .csv, .parquet or .jsonl."),
    label: str | None = typer.Option(None, "--label", "-l", help="Target column, if any (several: comma-separated)."),
    config: Path | None = ConfigOpt,
    data_root: Path | None = DataRootOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Show how each column is read (its inferred kind) and why."""
    from .data.readers import read_table
    from .schema import infer_problem_type, infer_schema

    cfg = _checked_config(config)
    table = read_table(data, data_root or cfg.data_root)
    labels = _labels(label) if label else None
    schema = infer_schema(table.frame, labels, cfg.columns, cfg.ignore)
    t = RichTable(title=f"{data}: {len(table.frame)} rows, {len(table.frame.columns)} columns")
    for heading in ("column", "kind", "reason"):
        t.add_column(heading)
    for name in [] if labels is None else [labels] if isinstance(labels, str) else labels:
        kind, why = infer_problem_type(table.frame[name], cfg.task.tag_separator)
        t.add_row(name, f"target ({kind})", why)
    for c in schema.columns:
        t.add_row(c.name, c.kind.value, c.reason)
    out.print(t)
    mods = schema.modalities()
    out.print("modalities: " + (", ".join(f"{m.name} ({m.kind}: {', '.join(m.columns)})" for m in mods) or "none"))


@app.command()
@handles_errors
def validate(
    data: Path = typer.Argument(..., help="Table to check."),
    label: str = LabelOpt,
    config: Path | None = ConfigOpt,
    data_root: Path | None = DataRootOpt,
    report: Path | None = typer.Option(None, "--report", help="Also write the problems as CSV here."),
    threads: int | None = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Decode every row as training would; list each problem (row, column, what); exit 2 if there is any."""
    from .data.readers import read_table
    from .data.validate import issues_frame, validate_table
    from .io import atomic_file

    _check_output(report, "--report")
    cfg = _checked_config(config)
    table = read_table(data, data_root or cfg.data_root)
    if len(table.frame) == 0:
        raise PolymodalError(f"{data} has no rows")
    result = validate_table(table, _labels(label), cfg, progress=not quiet)
    if report is not None:
        with atomic_file(report, "w", newline="", encoding="utf-8") as f:
            issues_frame(result.issues).to_csv(f, index=False)
    if result.ok:
        out.print(f"[green]ok[/green]: {result.rows} rows, no problems found", markup=True)
        return
    t = RichTable(title=f"{len(result.issues)} problems in {result.bad_rows} of {result.rows} rows")
    for c in ("row", "column", "problem"):
        t.add_column(c)
    for i in result.issues[:200]:
        t.add_row(str(i.row), i.column, i.problem)
    out.print(t)
    if len(result.issues) > 200:
        out.print(f"... {len(result.issues) - 200} more (use --report FILE for all)")
    raise typer.Exit(2)


@app.command()
@handles_errors
def fit(
    data: Path = typer.Argument(..., help="Training table."),
    label: str | None = typer.Option(
        None,
        "--label",
        "-l",
        help="Name of the target column; several, comma-separated (--label rating,recommended), train one "
        "multi-task model with a head per target. Not used by --problem-type retrieval (--query/--target) nor "
        "reconstruction (no label).",
    ),
    query: str | None = typer.Option(
        None,
        "--query",
        help="--problem-type retrieval: the query tower's columns, comma-separated (e.g. --query title).",
    ),
    target: str | None = typer.Option(
        None,
        "--target",
        help="--problem-type retrieval: the target tower's columns, comma-separated (e.g. --target image); row i's "
        "query matches row i's target.",
    ),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Run directory to create."),
    config: Path | None = ConfigOpt,
    data_root: Path | None = DataRootOpt,
    time_limit: float | None = typer.Option(
        None, "--time-limit", help="Seconds of training at most (decoding the table not counted).", callback=_positive
    ),
    ignore: str | None = typer.Option(None, "--ignore", help="Comma-separated columns to leave out."),
    fusion: str | None = typer.Option(
        None, "--fusion", help=f"Fusion method: {FUSIONS} (default: the config's, else concat)."
    ),
    encoder: list[str] | None = typer.Option(
        None,
        "--encoder",
        help="KIND_OR_COLUMN=NAME: the encoder of a kind (image, audio, video, text, timeseries, tabular) or of one "
        "column, "
        "e.g. --encoder review=text_transformer (repeatable).",
    ),
    problem_type: str | None = typer.Option(
        None,
        "--problem-type",
        help=f"One of {PROBLEM_TYPES} (default: binary, multiclass, multilabel or regression, inferred from the "
        "label); multilabel: several tags per row ('a|b' or a JSON list); generation: the label is text to write "
        "(captions, free-form answers); retrieval: two towers (--query, --target columns) that embed row i's query "
        "next to row i's target (then `polymodal embed` / `polymodal search`); reconstruction: an autoencoder "
        "without a label, whose predictions are anomaly scores (anomaly_score, anomaly_<modality>).",
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Random seed, 0 to 2**32 - 1 (default 0).", min=0, max=SEED_MAX
    ),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help="Default (none): the fused network, joined on tables up to 5,000 training rows by gradient "
        "boosting and linear models when they improve it on validation. 'fast': the network alone; 'pretrained' "
        "(a frozen pretrained encoder per text/image/audio column whose weights are on this machine; it says "
        "which it could not find) or 'quality' (a weighted ensemble of fused and single-modality networks and "
        "classical learners, selected on validation within --time-limit; prints the members' leaderboard); "
        "'robust' (one network that degrades gracefully when a modality is noisy or missing: dynamic fusion with "
        "independent per-modality experts and a joint expert, corruption augmentation).",
    ),
    recipe: str | None = typer.Option(
        None,
        "--recipe",
        help="A config measured to work for a kind of problem, under --config's settings: "
        "'vqa' (questions about images, answered by classification; see docs/USER_GUIDE.md section 8).",
    ),
    on_error: str | None = OnErrorOpt,
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace --out if it is a polymodal run directory or an empty folder."
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue an interrupted fit (same command line plus --resume) from the checkpoint saved at its last "
        "epoch end in .OUT.resume beside --out (one network: --preset fast, or the default on a large table).",
    ),
    deterministic: bool = typer.Option(
        False,
        "--deterministic",
        help="Deterministic algorithms only (training.deterministic): the same seed and data give identical weights.",
    ),
    init: Path | None = typer.Option(
        None,
        "--init",
        help="Run directory of `polymodal pretrain` (or any run): the encoders of the columns this table shares "
        "with it (same column, kind and encoder settings; a difference is refused) start from its weights, and "
        "their processors from its fitted state (training.init).",
    ),
    devices: str | None = DevicesOpt,
    strategy: str | None = StrategyOpt,
    num_nodes: int | None = NumNodesOpt,
    logger: str | None = LoggerOpt,
    tracking_dir: str | None = TrackingDirOpt,
    threads: int | None = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train a model on a table and save it as a run directory (written only when training succeeds)."""
    from .errors import RunDirError
    from .recipes import recipe as recipe_config
    from .rundir import check_replaceable
    from .training.checkpoint import resume_dir_for

    if out_dir.exists() and not overwrite:
        raise RunDirError(f"{out_dir} already exists; choose another --out or pass --overwrite")
    if overwrite:
        check_replaceable(out_dir)  # before training: only a run directory or an empty folder is replaced
    _check_output(out_dir, folder=True)
    cfg = _checked_config(recipe_config(recipe, config) if recipe else config, fusion, problem_type, encoder)
    cfg = _with_distribution(cfg, devices, strategy, num_nodes)
    cfg = _with_tracking(cfg, logger, tracking_dir)
    if deterministic:
        cfg.training.deterministic = True
    resume_dir = resume_dir_for(out_dir)
    _outputs.append(
        _Output(
            resume_dir,
            f"the last finished epoch is saved in {resume_dir}: run the same command with --resume to continue",
            optional=True,
        )
    )
    from .api import Predictor  # after the config check: importing the trainer takes seconds
    from .ranks import is_main_process

    p = Predictor(
        None if label is None else _labels(label),
        problem_type=problem_type,
        config=cfg,
        data_root=data_root,
        ignore=_split(ignore),
        time_limit=time_limit,
        seed=seed,
        on_error=on_error,
        preset=preset,
        verbose=not quiet,
        query=None if query is None else _split(query),
        target=None if target is None else _split(target),
        init=init,
    )
    p.fit(data, checkpoint_dir=resume_dir, resume=resume)
    if not is_main_process():  # rank 0 writes the run directory and prints the summary; the others are done
        return
    p.save(out_dir, overwrite=overwrite)
    r = p.fit_result
    assert r is not None, "fit() records its result"
    board = p.pipeline.leaderboard if p.pipeline is not None else None
    out.print(
        _metrics_table(
            f"validation (best epoch {r.best_epoch + 1} of {r.epochs_run}; training {r.train_seconds:.0f} s"
            f"{', stopped by the time limit' if r.time_limited else ''}, {r.fit_seconds:.0f} s in all)",
            {k.removeprefix("val_"): v for k, v in r.validation.items()},
        )
    )
    if board is not None:  # an ensemble, or a network that beat the classical members: what was tried
        out.print(_board_table("members (validation)", board))
    out.print(f"saved to {out_dir}")


@app.command()
@handles_errors
def predict(
    run: Path = typer.Argument(..., help="Run directory from `polymodal fit`."),
    data: Path = typer.Argument(..., help="Table to predict."),
    out_file: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="File to write: CSV, or Parquet / JSONL by its suffix (.parquet, .jsonl; default: CSV on stdout).",
    ),
    proba: bool = typer.Option(
        False,
        "--proba",
        help="Add one probability column per class (per tag for a multi-label model; multi-task: "
        "proba_<target>_<class> per classification target).",
    ),
    scores: bool = typer.Option(
        False, "--scores", help="Generation models: add log_prob, each generated text's log-probability."
    ),
    greedy: bool = typer.Option(
        False,
        "--greedy",
        help="Generation models: greedy decoding instead of the fitted decoding (beam search by default).",
    ),
    chunk_rows: int | None = ChunkRowsOpt,
    data_root: Path | None = DataRootOpt,
    on_error: str | None = OnErrorOpt,
    stream: bool = typer.Option(
        False,
        "--stream",
        help="Read JSON rows from stdin (DATA is '-'), one object per line, and write one JSON line per row to "
        "stdout as rows arrive, in order: {row, prediction[, probabilities]} or, for a bad line, "
        "{row, column, problem}; the stream goes on.",
    ),
    stream_batch: int = typer.Option(
        64, "--stream-batch", min=1, help="With --stream: lines predicted together at most (what has arrived)."
    ),
    threads: int | None = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Predict a table with a saved model; the output has the input's row number and the prediction (a multi-label
    model's tags joined by its task.tag_separator; a multi-task model: one column per target, named like it).
    The table is read and predicted in chunks and the output written as it goes (renamed into place when complete),
    so a table of any size predicts in bounded memory. With --stream, JSON lines on stdin are predicted as they
    arrive."""
    from .api import Predictor

    if stream or str(data) == "-":
        _predict_stream(run, data, out_file, proba, scores, greedy, data_root, stream_batch, stream, quiet)
        return
    _check_output(out_file)
    p = Predictor.load(run, verbose=not quiet)
    done = p.predict_to(
        data,
        out_file,
        proba=proba,
        return_scores=scores,
        on_error=on_error,
        data_root=data_root,
        decoding={"method": "greedy"} if greedy else None,
        chunk_rows=chunk_rows,
    )
    if out_file is not None:
        err.print(f"wrote {done.rows} predictions to {out_file}")


def _predict_stream(
    run: Path,
    data: Path,
    out_file: Path | None,
    proba: bool,
    scores: bool,
    greedy: bool,
    data_root: Path | None,
    batch: int,
    stream: bool,
    quiet: bool,
) -> None:
    import sys

    from .errors import ConfigError
    from .pipeline import FittedPipeline
    from .streaming import predict_lines

    if not stream or str(data) != "-":
        raise ConfigError("streaming prediction reads stdin: use `polymodal predict RUN - --stream`")
    if out_file is not None or scores or greedy:
        raise ConfigError("--stream writes JSON lines to stdout; --out, --scores and --greedy are for tables")
    pipeline = FittedPipeline.load(run, verbose=False)
    n = predict_lines(
        pipeline, sys.stdin, sys.stdout.write, sys.stdout.flush, proba=proba, data_root=data_root, max_batch=batch
    )
    if not quiet:
        err.print(f"answered {n} lines")


@app.command()
@handles_errors
def evaluate(
    run: Path = typer.Argument(..., help="Run directory from `polymodal fit`."),
    data: Path = typer.Argument(..., help="Labelled table to score."),
    as_json: bool = typer.Option(False, "--json", help="Print metrics as JSON."),
    robustness: bool = typer.Option(
        False,
        "--robustness",
        help="Also score the model with each modality missing and corrupted at increasing levels.",
    ),
    corruption: list[str] | None = typer.Option(
        None,
        "--corruption",
        help="With --robustness: sweep only this corruption, as NAME or "
        "NAME=L1,L2,... (repeatable; default: all that apply, at their default levels).",
    ),
    baseline: Path | None = typer.Option(
        None,
        "--baseline",
        help="With --robustness: robustness.json of a reference model (e.g. late "
        "fusion) for effective robustness (default: a flat curve).",
    ),
    out_dir: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="With --robustness: folder for robustness.csv/.json/.md and one PNG plot per modality.",
    ),
    chunk_rows: int | None = ChunkRowsOpt,
    data_root: Path | None = DataRootOpt,
    on_error: str | None = OnErrorOpt,
    anomaly_label: str | None = typer.Option(
        None,
        "--anomaly-label",
        help="Reconstruction models: the column flagging anomalies (1/0, true/false); adds the ROC-AUC and average "
        "precision of anomaly_score (without it: reconstruction errors only).",
    ),
    threads: int | None = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Score a saved model on a labelled table; with --robustness, also under missing and corrupted modalities."""
    from .api import Predictor
    from .errors import ConfigError
    from .evaluation.corruptions import parse_corruption_options

    if not robustness and (corruption or baseline is not None or out_dir is not None):
        raise ConfigError("--corruption, --baseline and --out need --robustness")
    _check_output(out_dir, folder=True)
    spec = parse_corruption_options(corruption)
    metrics = Predictor.load(run, verbose=not quiet).evaluate(
        data,
        on_error=on_error,
        data_root=data_root,
        robustness=robustness,
        corruptions=spec,
        robustness_out=out_dir,
        robustness_baseline=baseline,
        chunk_rows=chunk_rows,
        anomaly_label=anomaly_label,
    )
    report = metrics.pop("robustness", None)
    if "rows" in metrics:
        metrics["rows"] = int(metrics["rows"])  # a count (the library keeps every metric a float)
    if as_json:
        print(json.dumps(metrics if report is None else {**metrics, "robustness": report.to_dict()}, indent=2))
    else:
        out.print(_metrics_table(f"{data}", metrics))
        if report is not None:
            out.print(_robustness_table(report))
    if out_dir is not None:
        err.print(
            f"wrote robustness.csv, robustness.json, robustness.md and "
            f"{len(report.modalities)} plots (robustness_<modality>.png) to {out_dir}"
        )


def _robustness_table(report: Any) -> RichTable:
    """One row per (modality, corruption); the levels and full curves are in robustness.md/.csv and the plots."""
    better = "higher" if report.higher_is_better else "lower"
    t = RichTable(
        title=f"robustness: {report.metric}, {better} is better ({report.rows} rows)",
        caption="max sev.: at the most severe level; rel./eff.: relative/effective robustness",
    )
    t.add_column("modality", no_wrap=True)
    t.add_column("corruption", no_wrap=True)
    for c in ("clean", "max sev.", "missing", "rel.", "eff."):
        t.add_column(c, justify="right")
    for _, r in report.summary_frame().iterrows():
        t.add_row(
            r["modality"],
            r["corruption"],
            *(
                f"{r[k]:.3f}" if r[k] == r[k] else ""
                for k in ("clean", "most_severe", "missing", "relative_robustness", "effective_robustness")
            ),
        )
    return t


@app.command("explain")
@handles_errors
def explain_cmd(
    run: Path = typer.Argument(..., help="Run directory from `polymodal fit`."),
    data: Path = typer.Argument(
        ..., help="Table of rows to explain (with the label column, also the modality importance)."
    ),
    out_dir: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Folder for explanations.json, one row_<index>.png per row and importance.csv/.json/.md/.png.",
    ),
    method: str = typer.Option("occlusion", "--method", help="occlusion or integrated_gradients."),
    target: str | None = typer.Option(
        None,
        "--target",
        help="Classification with occlusion: log_odds (default) or probability of the predicted class "
        "(saturates on confident rows).",
    ),
    rows: int = typer.Option(8, "--rows", help="Explain the first N rows of the table."),
    importance: bool | None = typer.Option(
        None,
        "--importance/--no-importance",
        help="Also measure modality importance (drop-one and "
        "permutation) on every row of the table (default: when it has the label column).",
    ),
    bootstrap: int = typer.Option(
        200, "--bootstrap", help="Bootstrap resamples for the importance confidence intervals.", min=0
    ),
    repeats: int = typer.Option(1, "--repeats", help="Shuffles per column for permutation importance.", min=1),
    data_root: Path | None = DataRootOpt,
    on_error: str | None = OnErrorOpt,
    threads: int | None = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Explain predictions: per-row attributions (image heat maps, spectrogram saliency, token highlights,
    feature bars) and which input columns the model relies on (modality importance with confidence intervals)."""
    from .api import Predictor
    from .data.readers import read_table
    from .errors import ConfigError
    from .explain import write_explanations
    from .explain.attributions import METHODS

    if rows < 1:
        raise ConfigError(f"--rows must be at least 1, not {rows}")
    _check_output(out_dir, folder=True)
    if method not in METHODS:  # before the run and the table are read
        raise ConfigError(f"unknown explanation method '{method}'; choose one of: {', '.join(METHODS.names())}")
    p = Predictor.load(run, verbose=not quiet)
    table = read_table(data, data_root if data_root is not None else p.config.data_root)
    if importance is None:
        importance = all(c in table.frame.columns for c in ([p.label] if isinstance(p.label, str) else p.label))
    explanations = p.explain(
        table.frame.head(rows), method=method, data_root=table.root, on_error=on_error, target=target
    )
    result = (
        p.importance(table.frame, n_bootstrap=bootstrap, repeats=repeats, data_root=table.root, on_error=on_error)
        if importance
        else None
    )
    written = write_explanations(out_dir, explanations, result)
    out.print(_explanations_table(explanations))
    if result is not None:
        out.print(_importance_table(result))
    err.print(
        f"wrote {len(written)} files to {out_dir}: explanations.json, {len(explanations)} row plots"
        + (", importance.csv/.json/.md/.png" if result is not None else "")
    )


def _explanations_table(explanations: list[Any]) -> RichTable:
    """One line per row: prediction, target, and each column's share of the attribution."""
    cols = list(explanations[0].attributions) if explanations else []
    method = explanations[0].method if explanations else ""
    t = RichTable(
        title=f"explanations ({method}, {explanations[0].explained}): share of each column"
        if explanations
        else "explanations: share of each column",
        caption="weights: the fusion's own weights over modalities, where it has them",
    )
    for c in ("row", "prediction", "true"):
        t.add_column(c)
    for c in cols:
        t.add_column(c, justify="right")
    has_weights = any(e.fusion_weights for e in explanations)
    if has_weights:
        t.add_column("weights")
    for e in explanations:
        pred = str(e.prediction) + (f" ({e.probability:.2f})" if e.probability is not None else "")
        cells = [str(e.index), pred, "" if e.target is None else str(e.target)]
        cells += [f"{e.attributions[c].share:.0%}" if e.attributions[c].present else "empty" for c in cols]
        if has_weights:
            cells.append(", ".join(f"{m} {w:.2f}" for m, w in (e.fusion_weights or {}).items()))
        t.add_row(*cells)
    return t


def _importance_table(result: Any) -> RichTable:
    loss = "drop" if result.higher_is_better else "increase"
    t = RichTable(
        title=f"modality importance: {loss} in {result.metric} without the column "
        f"(intact {result.baseline:.3f}, {result.n_rows} rows)",
        caption=f"{result.confidence:.0%} bootstrap intervals, {result.n_bootstrap} resamples",
    )
    for c in ("column", "kind", "method", "importance", "CI"):
        t.add_column(c, justify="right" if c in ("importance", "CI") else "left")
    for _, r in result.to_frame().iterrows():
        ci = "" if r["ci_low"] != r["ci_low"] else f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        t.add_row(r["modality"], r["kind"], r["method"], f"{r['importance']:.3f}", ci)
    return t


@app.command("compare")
@handles_errors
def compare_cmd(
    data: Path = typer.Argument(..., help="Labelled table."),
    label: str = LabelOpt,
    fusions: str = typer.Option("all", "--fusions", help=f"'all' or comma-separated fusion names: {FUSIONS}."),
    seeds: int = typer.Option(1, "--seeds", help="Runs per variant (mean ± std).", min=1),
    test: Path | None = typer.Option(None, "--test", help="Test table (default: a 20% split)."),
    no_single: bool = typer.Option(False, "--no-single", help="Skip the single-modality models."),
    time_limit_per_run: float | None = typer.Option(
        None, "--time-limit-per-run", help="Seconds of training per run.", callback=_positive
    ),
    out_dir: Path = typer.Option(
        Path("compare"),
        "--out",
        "-o",
        show_default=False,
        help="Folder for the table and chart (default: ./compare, in the current folder).",
    ),
    keep_runs: bool = typer.Option(
        False, "--keep-runs", help="Save every trained model under OUT/runs/<variant>-seed<k>."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Reuse finished runs from OUT/runs.jsonl (same data and settings)."
    ),
    config: Path | None = ConfigOpt,
    data_root: Path | None = DataRootOpt,
    logger: str | None = LoggerOpt,
    tracking_dir: str | None = TrackingDirOpt,
    threads: int | None = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train each single modality and each fusion method on one split; write compare.md/.csv/.png.

    Each finished run is logged to OUT/runs.jsonl at once, so an interrupted comparison can go on with --resume.
    """
    from .evaluation.compare import compare

    checked = _checked_config(config)  # a typo exits 2 before the table is read
    tracked = _with_tracking(checked, logger, tracking_dir)  # one tracked run per variant and seed
    _check_output(
        out_dir,
        folder=True,
        kept=f"the runs finished so far are logged in {out_dir / 'runs.jsonl'}: run the same command with --resume "
        "to go on",
    )
    if "," in label:
        from .errors import ConfigError

        raise ConfigError("compare trains single-target models: give one --label (multi-task is for fit)")
    compare(
        data,
        label,
        fusions=fusions,
        seeds=seeds,
        test_data=test,
        single_modalities=not no_single,
        config=config if tracked is checked else tracked,
        data_root=data_root,
        time_limit_per_run=time_limit_per_run,
        out_dir=out_dir,
        keep_runs=keep_runs,
        resume=resume,
        verbose=not quiet,
    )
    out.print((out_dir / "compare.md").read_text(encoding="utf-8"))
    out.print(f"wrote compare.md, compare.csv and compare.png to {out_dir.absolute()}", soft_wrap=True)


@app.command("tune")
@handles_errors
def tune_cmd(
    data: Path = typer.Argument(..., help="Labelled table (split once into training and validation rows)."),
    label: str = LabelOpt,
    time_limit: float | None = typer.Option(
        None,
        "--time-limit",
        help="Seconds for the whole study run (required): no trial starts after it, and each trial trains at most "
        "for the time left.",
    ),
    trials: int | None = typer.Option(
        None,
        "--trials",
        help="Trials of the study at most, counting those of earlier runs into the same --out (a resumed study "
        "runs only the rest).",
    ),
    out_dir: Path = typer.Option(
        Path("tune"),
        "--out",
        "-o",
        show_default=False,
        help="The study's folder (default: ./tune): study.journal, study.log, leaderboard.csv/.md, tune.png, "
        "tune.json and best/ (the best trial's run directory). Run the same command again to resume the study; "
        "start more processes on it to share it.",
    ),
    space: Path | None = typer.Option(
        None,
        "--space",
        help="YAML file of search-space entries (config path: distribution) overriding or adding to the "
        "generated space; null removes an entry (docs/USER_GUIDE.md, 'Tuning'). Checked before the table is read.",
    ),
    show_space: bool = typer.Option(
        False,
        "--show-space",
        help="Print the search space (generated, with --space applied) and exit; when tuning, the entries of "
        "encoders that no column of the table uses are left out.",
    ),
    no_prune: bool = typer.Option(
        False, "--no-prune", help="Train every trial to its end (no median pruning of poor trials)."
    ),
    config: Path | None = ConfigOpt,
    data_root: Path | None = DataRootOpt,
    preset: str | None = typer.Option(
        None,
        "--preset",
        help="The encoders of every trial: from-scratch (default) or 'pretrained' (as for fit). Each trial is one "
        "network: fit's classical members and ensembles are not tuned.",
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Seeds the split, the sampler and every trial (default 0).", min=0, max=SEED_MAX
    ),
    on_error: str | None = OnErrorOpt,
    logger: str | None = LoggerOpt,
    tracking_dir: str | None = TrackingDirOpt,
    threads: int | None = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Search fusions, encoder sizes, learning rate, dropout and epochs for the best validation score (Optuna:
    TPE sampler, median pruning); save the best trial as OUT/best, a run directory for predict/evaluate/serve.

    The study is stored in OUT/study.journal: a killed run resumes where it stopped when the same command is run
    again, and several processes (or machines sharing the folder) can work on one study at once.
    """
    from .config import apply_choices
    from .tuning.space import load_space

    cfg = _with_tracking(_checked_config(config), logger, tracking_dir)  # one tracked run per trial
    updates: dict[str, Any] = {}
    if seed is not None:
        updates["training"] = {**cfg.to_dict()["training"], "seed": seed}
    if on_error is not None:
        updates["on_error"] = on_error
    if data_root is not None:
        updates["data_root"] = str(data_root)
    cfg = apply_choices({**cfg.to_dict(), **updates})
    search = load_space(space, cfg)  # a bad path or range exits 2 before the table is read
    if show_space:
        out.print("\n".join(search.describe()), soft_wrap=True)
        return
    _check_output(
        out_dir,
        folder=True,
        kept=f"the study was kept in {out_dir / 'study.journal'} (finished trials included; the interrupted one is "
        "not counted): run the same command again to resume it",
    )
    if time_limit is None:
        from .errors import ConfigError

        raise ConfigError("--time-limit is required: the seconds the study may run, e.g. --time-limit 3600")
    from .tuning import tune

    result = tune(
        data,
        label,
        cfg,
        time_limit=time_limit,
        trials=trials,
        space=search,
        out=out_dir,
        preset=preset,
        prune=not no_prune,
        verbose=not quiet,
    )
    board = result.leaderboard
    t = RichTable(title=f"tuning: {len(board)} trials, best first ({result.monitor} on validation)")
    fixed = ["trial", "state", result.monitor, "epochs", "seconds"]
    for c in [*fixed, "parameters"]:
        t.add_column(c)
    params = [c for c in board.columns if c not in (*fixed, "best_epoch", "note")]
    for _, row in board.head(10).iterrows():
        shown = ", ".join(f"{c.split('.', 1)[-1]}={_cell(row[c])}" for c in params if _cell(row[c]))
        t.add_row(*(_cell(row[c]) for c in fixed), shown)
    out.print(t)
    out.print(
        f"best: trial {result.best_trial}, {result.monitor} {result.best_value:.4f}; "
        f"this run {result.trials_run} trials, stopped by {result.stopped_by}",
        soft_wrap=True,
    )
    out.print(f"wrote the leaderboard, tune.png and best/ to {out_dir.absolute()}", soft_wrap=True)


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@app.command("report")
@handles_errors
def report_cmd(
    run: Path = typer.Argument(..., help="Run directory from `polymodal fit`."),
    data: Path = typer.Argument(..., help="Labelled test table."),
    out_file: Path = typer.Option(
        Path("report.html"),
        "--out",
        "-o",
        show_default=False,
        help="HTML file to write (default: ./report.html, in the current folder).",
    ),
    robustness: Path | None = typer.Option(
        None,
        "--robustness",
        help="robustness.json from `polymodal evaluate --robustness --out DIR` "
        "(default: RUN/robustness.json or RUN/robustness/robustness.json when there is one).",
    ),
    examples: int = typer.Option(
        6, "--examples", help="Explained test rows in the gallery, about half right and half wrong (0: none)."
    ),
    bootstrap: int = typer.Option(
        200,
        "--bootstrap",
        help="Bootstrap resamples for the modality-importance confidence intervals (0: no importance section).",
    ),
    method: str = typer.Option(
        "occlusion", "--method", help="Attribution method of the gallery: occlusion or integrated_gradients."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seeds the bootstrap and the choice of gallery rows.", min=0, max=SEED_MAX
    ),
    data_root: Path | None = DataRootOpt,
    on_error: str | None = OnErrorOpt,
    threads: int | None = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Write one self-contained HTML report (open it in any browser, offline): schema, training curves, test
    metrics and plots, robustness, modality importance and explained examples."""
    from .reporting import report

    _check_output(out_file)
    path = report(
        run,
        data,
        out_file,
        robustness=robustness,
        n_examples=examples,
        n_bootstrap=bootstrap,
        explain_method=method,
        seed=seed,
        data_root=data_root,
        on_error=on_error,
        progress=None if quiet else lambda msg: err.print(msg, style="dim", highlight=False),
    )
    # the absolute path (the default writes into the current folder), on one line, so scripts can read it
    out.print(str(Path(path).absolute()), soft_wrap=True, markup=False, highlight=False)


DEMO_TASKS = ("classification", "captioning", "qa", "sensors", "video")
DEMO_REPORT_EXAMPLES, DEMO_REPORT_BOOTSTRAP = 4, 50
DEMO_QA_QUESTIONS = 3  # distinct questions per training scene of `demo --task qa`


@app.command()
@handles_errors
def demo(
    out_dir: Path = typer.Option(Path("polymodal-demo"), "--out", "-o", help="Folder for data and run."),
    task: str = typer.Option(
        "classification",
        "--task",
        help="classification (image+audio+text+tabular "
        "demo), captioning (describe scenes of shapes: generation, seed 002), qa "
        "(answer questions about the scenes, seed 003), sensors (activities from accelerometer + gyroscope "
        "series + a tabular column) or video (the direction a shape moves + a rising/falling sound).",
    ),
    rows: int | None = typer.Option(
        None,
        "--rows",
        help="Training rows to generate, at least 20 (default: 1200 for classification, 2000 for captioning and qa, "
        "800 for sensors and video).",
        min=20,
    ),
    config: Path | None = ConfigOpt,
    seed: int = typer.Option(
        0, "--seed", help="Seeds the data and the training (0 to 2**32 - 1).", min=0, max=SEED_MAX
    ),
    threads: int | None = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Generate a synthetic data set, train, evaluate on held-out rows, print a table.

    --task classification: image + audio + text + tabular columns, three classes.
    --task captioning: a default generation fit on scenes of coloured shapes (about 10 minutes on 2 CPU cores).
    --task qa: questions about the scenes, answered by classification (VQA-style) with the vqa recipe.
    --task sensors: two time-series columns (accelerometer, gyroscope: .npy files) that each show one factor.
    --task video: .mp4 clips whose answer needs motion, and a .wav column whose chirp carries a second factor.
    """
    from .errors import ConfigError

    if task not in DEMO_TASKS:
        raise ConfigError(f"unknown demo task '{task}'; choose one of: {', '.join(DEMO_TASKS)}")
    _checked_config(config)
    _check_output(
        out_dir,
        folder=True,
        kept=f"{out_dir} holds the steps finished before the signal (generated data first, then run/); delete it or "
        "choose another --out",
    )
    {
        "classification": _demo_classification,
        "captioning": _demo_captioning,
        "qa": _demo_qa,
        "sensors": _demo_sensors,
        "video": _demo_video,
    }[task](out_dir, rows, config, seed, quiet)


def _demo_classification(out_dir: Path, rows: int | None, config: Path | None, seed: int, quiet: bool) -> None:
    from .api import Predictor
    from .datasets.synthetic import make_demo

    rows = rows or 1200
    start = time.perf_counter()
    paths = make_demo(out_dir / "data", n_train=rows, n_test=max(rows // 3, 50), seed=seed)
    err.print(f"demo data: {paths.train} and {paths.test}")
    p = Predictor("label", config=config, verbose=not quiet, seed=seed).fit(paths.train)
    run = p.save(out_dir / "run")
    metrics = p.evaluate(paths.test)
    out.print(_metrics_table(f"demo: test metrics ({int(metrics['rows'])} held-out rows)", metrics))
    from .reporting import report

    # Fewer bootstrap resamples than `polymodal report`'s default keep the demo quick; the intervals are wider.
    page = report(
        run,
        paths.test,
        out_dir / "report.html",
        robustness=None,
        n_examples=DEMO_REPORT_EXAMPLES,
        n_bootstrap=DEMO_REPORT_BOOTSTRAP,
        seed=seed,
        progress=None if quiet else lambda msg: err.print(msg, style="dim", highlight=False),
    )
    out.print(f"run directory: {run}   total time: {time.perf_counter() - start:.0f} s")
    out.print(f"next: polymodal evaluate {run} {paths.test}")
    out.print(f"report: {page}", soft_wrap=True, markup=False, highlight=False)


def _examples_table(title: str, frame: Any, columns: list[str]) -> RichTable:
    t = RichTable(title=title)
    for c in columns:
        t.add_column(c)
    for _, r in frame.iterrows():
        t.add_row(*(str(r[c]) for c in columns))
    return t


def _demo_captioning(out_dir: Path, rows: int | None, config: Path | None, seed: int, quiet: bool) -> None:
    import pandas as pd

    from .api import Predictor
    from .datasets.scenes import make_captioning

    rows = rows or 2000
    start = time.perf_counter()
    paths = make_captioning(out_dir / "data", n_train=rows, n_test=max(rows // 4, 20), seed=seed)
    err.print(f"captioning data: {paths.train} and {paths.test} (held-out scenes, every caption unseen)")
    p = Predictor("caption", problem_type="generation", config=config, verbose=not quiet, seed=seed)
    p.fit(paths.train)
    run = p.save(out_dir / "run")
    metrics = p.evaluate(paths.test)
    out.print(
        _metrics_table(f"captioning demo: test metrics ({int(metrics['rows'])} unseen scenes, beam search)", metrics)
    )
    sample = pd.read_csv(paths.test).head(5)
    sample["generated"] = p.predict(sample, data_root=paths.root).to_numpy()
    out.print(_examples_table("examples", sample, ["image", "caption", "generated"]))
    out.print(f"run directory: {run}   total time: {time.perf_counter() - start:.0f} s")
    out.print(f"next: polymodal predict {run} {paths.test}")


def _demo_qa(out_dir: Path, rows: int | None, config: Path | None, seed: int, quiet: bool) -> None:
    import pandas as pd

    from .api import Predictor
    from .datasets.scenes import make_qa
    from .recipes import recipe

    rows = rows or 2000
    start = time.perf_counter()
    paths = make_qa(
        out_dir / "data", n_train=rows, n_test=max(rows // 4, 20), seed=seed, questions_per_scene=DEMO_QA_QUESTIONS
    )
    err.print(
        f"QA data: {paths.train} and {paths.test}"
        + (" (questions as text and as speech: question_audio)" if paths.speech else " (text questions)")
    )
    # Answer classification (VQA-style): the answer is a class; the image and the text question are the inputs.
    # The vqa recipe: FiLM lets the question pick out the image cells it is about, which know where they are.
    p = Predictor(
        "answer",
        config=recipe("vqa", config),
        ignore=["question_audio"] if paths.speech else None,
        verbose=not quiet,
        seed=seed,
    ).fit(paths.train)
    run = p.save(out_dir / "run")
    metrics = p.evaluate(paths.test)
    out.print(
        _metrics_table(
            f"QA demo (answer classification, text questions): test metrics ({int(metrics['rows'])} unseen scenes)",
            metrics,
        )
    )
    sample = pd.read_csv(paths.test).head(6)
    sample["predicted"] = p.predict(sample, data_root=paths.root).to_numpy()
    out.print(_examples_table("examples", sample, ["image", "question", "answer", "predicted"]))
    out.print(f"run directory: {run}   total time: {time.perf_counter() - start:.0f} s")
    out.print(
        "speech questions: fit with --ignore question (the audio column question_audio is then the "
        "question); free-form answers: --problem-type generation"
    )


def _demo_sensors(out_dir: Path, rows: int | None, config: Path | None, seed: int, quiet: bool) -> None:
    from .api import Predictor
    from .datasets.sensors import make_sensors

    rows = rows or 800
    start = time.perf_counter()
    paths = make_sensors(out_dir / "data", n_train=rows, n_test=max(rows // 3, 30), seed=seed)
    err.print(f"sensor data: {paths.train} and {paths.test} (accel and gyro: .npy series of varying length)")
    p = Predictor("label", config=config, verbose=not quiet, seed=seed).fit(paths.train)
    run = p.save(out_dir / "run")
    metrics = p.evaluate(paths.test)
    out.print(_metrics_table(f"sensors demo: test metrics ({int(metrics['rows'])} held-out recordings)", metrics))
    out.print(f"run directory: {run}   total time: {time.perf_counter() - start:.0f} s")
    out.print(
        f"next: polymodal evaluate {run} {paths.test} --robustness; each sensor alone: polymodal fit "
        f"{paths.train} --label label --out run-accel --ignore gyro (or --ignore accel)",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )


def _demo_video(out_dir: Path, rows: int | None, config: Path | None, seed: int, quiet: bool) -> None:
    from .api import Predictor
    from .datasets.video import VIDEO_FACTOR_COLUMNS, make_video_task

    rows = rows or 800
    start = time.perf_counter()
    paths = make_video_task(out_dir / "data", n_train=rows, n_test=max(rows // 3, 30), seed=seed)
    err.print(f"video data: {paths.train} and {paths.test} (.mp4 clips + .wav chirps)")
    # direction and pitch are the label's two parts, written for the benchmarks: leave them out of the inputs
    p = Predictor("label", config=config, ignore=list(VIDEO_FACTOR_COLUMNS), verbose=not quiet, seed=seed)
    p.fit(paths.train)
    run = p.save(out_dir / "run")
    metrics = p.evaluate(paths.test)
    out.print(_metrics_table(f"video demo: test metrics ({int(metrics['rows'])} held-out clips)", metrics))
    out.print(f"run directory: {run}   total time: {time.perf_counter() - start:.0f} s")
    out.print(f"next: polymodal evaluate {run} {paths.test} --robustness", soft_wrap=True, markup=False)


config_app = _Typer(
    no_args_is_help=True,
    help="The config file: its JSON Schema (for editors) and a commented example with every default.",
)
app.add_typer(config_app, name="config")


@config_app.command("schema")
@handles_errors
def config_schema_cmd(quiet: bool = QuietOpt) -> None:
    """Print the JSON Schema of a config file, with every registered encoder and fusion and their parameters."""
    from .config_schema import json_schema_text

    print(json_schema_text())


@config_app.command("example")
@handles_errors
def config_example_cmd(
    fusion: str = typer.Option("concat", "--fusion", help=f"Fusion whose parameters are shown: {FUSIONS}."),
    quiet: bool = QuietOpt,
) -> None:
    """Print a config with every default, commented; it loads as is with --config."""
    from .config_schema import example_yaml

    print(example_yaml(fusion), end="")


cache_app = _Typer(
    no_args_is_help=True,
    help="The caches: features of frozen pretrained "
    "backbones, kept on disk (in $POLYMODAL_CACHE_DIR, default ~/.cache/polymodal/features), and decoded samples "
    "(images, audio; in $POLYMODAL_SAMPLE_CACHE, default ~/.cache/polymodal/samples, size limit "
    "$POLYMODAL_SAMPLE_CACHE_SIZE, default 20G), reused across epochs, runs and compare calls.",
)
app.add_typer(cache_app, name="cache")


def _size(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            break
    return f"{n:.1f} {unit}"


@cache_app.command("info")
@handles_errors
def cache_info(quiet: bool = QuietOpt) -> None:
    """List the cached models (fingerprint, source, entries, size on disk) and the sample cache's size."""
    from .data.sample_cache import sample_store
    from .features.cache import cache_root, get_cache

    samples = sample_store()
    if samples is None:
        out.print("sample cache: off (POLYMODAL_SAMPLE_CACHE=memory: decoded samples are held in memory)")
    else:
        s = samples.info()
        out.print(f"sample cache: {s['root']}: {s['entries']} entries, {_size(s['bytes'])} (limit {_size(s['limit'])})")
    root = cache_root()
    rows = get_cache().info()
    if not rows:
        out.print(f"the feature cache at {root} is empty")
        return
    t = RichTable(title=f"feature cache: {root}")
    for c in ("model", "source", "encoder", "entries", "size"):
        t.add_column(c, justify="right" if c in ("entries", "size") else "left")
    for r in rows:
        t.add_row(r["model"], str(r["source"]), str(r["encoder"]), str(r["entries"]), _size(r["bytes"]))
    out.print(t)
    out.print(f"total: {sum(r['entries'] for r in rows)} entries, {_size(sum(r['bytes'] for r in rows))}")


@cache_app.command("clear")
@handles_errors
def cache_clear(
    model: str | None = typer.Option(
        None,
        "--model",
        help="Only this model's features (its fingerprint, or a prefix of it, from `polymodal cache info`); "
        "the sample cache is kept.",
    ),
    quiet: bool = QuietOpt,
) -> None:
    """Delete cached features (all of them, or one model's) and decoded samples; they are recomputed when needed."""
    from .data.sample_cache import sample_store
    from .features.cache import cache_root, get_cache

    samples = sample_store()
    if model is None and samples is not None:
        out.print(f"removed {samples.clear()} cached sample(s) from {samples.root}")
    root = cache_root()
    removed = get_cache().clear(model)
    if model is not None and removed == 0:
        raise PolymodalError(f"no cached model matches '{model}' in {root}; see `polymodal cache info`")
    out.print(f"removed {removed} cached model folder(s) from {root}")


@app.command()
@handles_errors
def export(
    run: Path = typer.Argument(..., help="Run directory from `polymodal fit`."),
    out_dir: Path = typer.Option(
        ..., "--out", "-o", help="Export directory to create (a run directory plus the graph files and export.json)."
    ),
    fmt: str = typer.Option("onnx", "--format", "-f", help="onnx or torchscript."),
    quantize: str = typer.Option("none", "--quantize", help="none or int8 (ONNX Runtime)."),
    quantize_mode: str = typer.Option(
        "auto", "--quantize-mode", help="dynamic, static, or auto (static when --calibration is given)."
    ),
    calibration: Path | None = typer.Option(
        None,
        "--calibration",
        help="Table whose rows calibrate static int8 quantization and check parity "
        "(default: parity on random inputs, dynamic quantization).",
    ),
    calibration_rows: int = typer.Option(256, "--calibration-rows", help="Rows of --calibration to use."),
    min_agreement: float = typer.Option(
        0.99,
        "--min-agreement",
        help="int8: share of calibration rows (0..1) on which the int8 graph must predict as the eager model; "
        "below it nothing is written and the command exits 2 naming the layers that add the most error.",
    ),
    allow_degraded: bool = typer.Option(
        False, "--allow-degraded", help="int8: write the int8 graph even below --min-agreement (with a warning)."
    ),
    data_root: Path | None = DataRootOpt,
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace --out if it is a polymodal run directory or an empty folder."
    ),
    threads: int | None = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Export the whole model (encoders + fusion + head) as one ONNX or TorchScript graph, checked against eager;
    a generation model as an encoder graph and a decoder-step graph (greedy and beam search checked against eager)."""
    from .errors import ConfigError
    from .export.export import ExportConfig, export_run

    try:
        cfg = ExportConfig(
            format=fmt,
            quantize=quantize,
            quantize_mode=quantize_mode,
            calibration_rows=calibration_rows,
            min_agreement=min_agreement,
            allow_degraded=allow_degraded,
        )
    except ValueError as e:
        raise ConfigError(f"invalid export options:\n{e}") from None
    _check_output(out_dir, folder=True)
    result = export_run(run, out_dir, cfg, data=calibration, data_root=data_root, overwrite=overwrite)
    t = RichTable(title=f"{out_dir} ({result.format}{', ' + result.quantization if result.quantization else ''})")
    for c in ("file", "max |diff| vs eager", "same class / text", "rows"):
        t.add_column(c, justify="right" if c != "file" else "left")
    for name, p in result.parity.items():
        t.add_row(name, f"{p.max_abs_diff:.2e}", "" if p.agreement is None else f"{p.agreement:.1%}", str(p.rows))
    out.print(t)
    out.print(f"parity measured on {result.parity_inputs}; inputs: {', '.join(result.signature.names)}")
    if result.int8_gate is not None:
        g = result.int8_gate
        out.print(
            f"int8 gate: {g.agreement:.1%} agreement on {g.rows} rows (min {g.min_agreement:.1%}); "
            f"{len(g.kept_float)} layers kept float32: {', '.join(g.kept_float) or 'none'}",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )


@app.command("prune")
@handles_errors
def prune_cmd(
    run: Path = typer.Argument(..., help="Run directory from `polymodal fit`."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Pruned run directory to create."),
    amount: float = typer.Option(
        0.5, "--amount", help="Share of each linear/conv layer's weights set to zero (smallest magnitudes first)."
    ),
    fine_tune: Path | None = typer.Option(
        None, "--fine-tune", help="Labelled table to fine-tune the pruned model on (pruned weights stay zero)."
    ),
    epochs: int = typer.Option(1, "--epochs", help="Fine-tuning epochs."),
    eval_data: Path | None = typer.Option(None, "--eval", help="Labelled table scored before and after."),
    data_root: Path | None = DataRootOpt,
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace --out if it is a polymodal run directory or an empty folder."
    ),
    threads: int | None = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Magnitude-prune every linear and conv weight of a saved model; report sparsity (and metrics with --eval)."""
    from .export.prune import prune_run

    _check_output(out_dir, folder=True)
    r = prune_run(
        run,
        out_dir,
        amount,
        fine_tune_data=fine_tune,
        epochs=epochs,
        eval_data=eval_data,
        data_root=data_root,
        overwrite=overwrite,
        verbose=not quiet,
    )
    out.print(
        f"pruned {r.layers} layers: {r.sparsity:.1%} of their weights are zero"
        + (f"; fine-tuned {r.fine_tune_epochs} epoch(s)" if r.fine_tune_epochs else "")
    )
    if r.metrics_before is not None and r.metrics_after is not None:
        t = RichTable(title=f"{eval_data}")
        for c in ("metric", "before", "after"):
            t.add_column(c, justify="right" if c != "metric" else "left")
        for k, v in r.metrics_before.items():
            if k != "rows":
                t.add_row(k, f"{v:.4f}", f"{r.metrics_after[k]:.4f}")
        out.print(t)
    out.print(f"saved to {out_dir}")


@app.command()
@handles_errors
def serve(
    run: Path = typer.Argument(..., help="Run or export directory."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (default: this machine only)."),
    port: int = typer.Option(8000, "--port"),
    backend: str = typer.Option("torch", "--backend", help="torch, onnx or onnx-int8."),
    max_batch: int = typer.Option(32, "--max-batch", help="Rows run together at most (1: no micro-batching)."),
    max_wait_ms: float = typer.Option(
        5.0, "--max-wait-ms", help="How long a request waits for others to join its batch."
    ),
    max_body_mb: float = typer.Option(20.0, "--max-body-mb", help="Larger request bodies get 413."),
    max_rows: int = typer.Option(64, "--max-rows", help="Rows in one request at most."),
    max_image_mp: float = typer.Option(
        4.0, "--max-image-mp", help="Megapixels per image at most (checked from the header; larger: 413)."
    ),
    max_audio_seconds: float = typer.Option(60.0, "--max-audio-seconds", help="Seconds per audio file at most (413)."),
    max_video_seconds: float = typer.Option(
        60.0, "--max-video-seconds", help="Seconds per video file at most (checked from the header; longer: 413)."
    ),
    decode_workers: int = typer.Option(2, "--decode-workers", help="Threads decoding request files."),
    max_queue: int = typer.Option(32, "--max-queue", help="Requests waiting to be decoded at most; more get 503."),
    request_timeout: float = typer.Option(
        30.0, "--request-timeout", help="Seconds a request may take (body, decoding and model) before 408/504."
    ),
    api_key_file: Path | None = typer.Option(
        None,
        "--api-key-file",
        help="File of API keys, one per line (16+ characters): every route but /health then needs one, sent as "
        "'Authorization: Bearer KEY' or 'X-API-Key: KEY' (else 401).",
    ),
    cors_origin: list[str] | None = typer.Option(
        None, "--cors-origin", help="An origin allowed to call the server from a browser (repeatable; default: none)."
    ),
    rate_limit: str | None = typer.Option(
        None, "--rate-limit", help="Requests per client (API key, else address) at most: N/s, N/min or N/h (429)."
    ),
    client_concurrency: int | None = typer.Option(
        None, "--client-concurrency", help="Requests of one client in progress at once at most (more get 429)."
    ),
    access_log: str = typer.Option(
        "text", "--access-log", help="Access log format: text (uvicorn's lines) or json (one object per request)."
    ),
    collection: Path | None = typer.Option(
        None,
        "--collection",
        help="Retrieval models: what POST /search searches: a table of the target columns (embedded at start), a "
        ".npy of target vectors (`polymodal embed --side target`) or an index folder. Default: RUN/search_index "
        "when the run has one (`polymodal embed --side target --index`).",
    ),
    threads: int | None = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Serve a saved model over HTTP: POST /predict (POST /generate for generation models; POST /embed and
    POST /search for retrieval models), POST /predict/stream (NDJSON), GET /health, GET /metadata, GET /metrics
    (Prometheus); API docs at /docs."""
    # A first line at once, before the imports and the load (tens of seconds on a busy machine), then progress.
    start = time.perf_counter()
    progress = (lambda msg: None) if quiet else (lambda msg: err.print(msg, highlight=False, soft_wrap=True))
    progress(f"loading {run} ...")
    from .errors import ConfigError
    from .serving.schemas import ServeConfig
    from .threads import current_threads

    try:
        cfg = ServeConfig(
            host=host,
            port=port,
            backend=backend,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_body_bytes=int(max_body_mb * 1_000_000),
            max_rows=max_rows,
            threads=current_threads(),  # --threads, else the config-free default (polymodal.threads)
            max_image_pixels=max(1, int(max_image_mp * 1_000_000)),
            max_audio_seconds=max_audio_seconds,
            max_video_seconds=max_video_seconds,
            decode_workers=decode_workers,
            max_queue=max_queue,
            request_timeout_s=request_timeout,
            body_timeout_s=request_timeout,
            api_key_file=None if api_key_file is None else str(api_key_file),
            cors_origins=cors_origin or [],
            rate_limit=rate_limit,
            client_concurrency=client_concurrency,
            access_log=access_log,
            collection=_serve_collection(run, collection),
        )
    except ValueError as e:
        raise ConfigError(f"invalid serve options:\n{e}") from None
    from .serving.net import bind

    if cfg.api_key_file is not None:  # a missing or empty key file is an error before anything is loaded
        from .serving.security import load_api_keys

        load_api_keys(cfg.api_key_file)
    sock = bind(host, port)  # before the imports and the load: a busy port is an error at once, not after "serving"
    from .api import Predictor
    from .serving.app import serve as run_server

    progress(f"imported the model code ({time.perf_counter() - start:.1f} s); reading the model ({backend}) ...")
    predictor = Predictor.load(run, verbose=False, backend=backend)
    progress(f"model loaded ({time.perf_counter() - start:.1f} s since start)")
    err.print(f"serving {run} ({backend}) on http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    run_server(predictor, cfg, quiet=quiet, sock=sock)


def _serve_collection(run: Path, collection: Path | None) -> str | None:
    """--collection, else the run's saved index (a retrieval run's RUN/search_index), else None."""
    if collection is not None:
        if not collection.exists():
            from .errors import ConfigError

            raise ConfigError(f"--collection {collection} does not exist")
        return str(collection)
    saved = run / "search_index"  # polymodal.retrieval.INDEX_DIR, named here to keep serve's imports light
    return str(saved) if saved.is_dir() else None


@app.command()
@handles_errors
def embed(
    run: Path = typer.Argument(
        ..., help="Run directory of a retrieval model (`polymodal fit --problem-type retrieval`)."
    ),
    data: Path = typer.Argument(..., help="Table with the side's columns."),
    side: str = typer.Option("query", "--side", help="Which tower embeds the rows: query or target."),
    out_file: Path = typer.Option(..., "--out", "-o", help="The vectors: a .npy file of float32 [rows, dim]."),
    index: bool = typer.Option(
        False,
        "--index",
        help="--side target: also build an approximate (usearch) index of the vectors into RUN/search_index, which "
        "`polymodal search` then uses instead of embedding --collection.",
    ),
    chunk_rows: int | None = ChunkRowsOpt,
    data_root: Path | None = DataRootOpt,
    threads: int | None = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Embed a table's query or target columns with a retrieval model: unit-norm vectors, one row each."""
    from .errors import ConfigError

    if side not in ("query", "target"):
        raise ConfigError(f"--side must be query or target, not {side!r}")
    if index and side != "target":
        raise ConfigError("--index indexes a target collection: use it with --side target")
    _check_output(out_file)
    from .api import Predictor
    from .retrieval import build_index, save_vectors

    p = Predictor.load(run, verbose=not quiet)
    vectors = p.embed(data, side=side, data_root=data_root, chunk_rows=chunk_rows)
    save_vectors(vectors, out_file)
    out.print(f"{len(vectors)} {side} vectors of {vectors.shape[1]} dimensions saved to {out_file}")
    if index:
        assert p.pipeline is not None, "a loaded Predictor is fitted"
        folder = build_index(p.pipeline, vectors, run)
        out.print(f"approximate index of {len(vectors)} rows saved to {folder}")


@app.command()
@handles_errors
def search(
    run: Path = typer.Argument(..., help="Run directory of a retrieval model."),
    queries: Path = typer.Argument(..., help="Table with the query columns."),
    collection: Path | None = typer.Option(
        None,
        "--collection",
        help="Table with the target columns to search, or a .npy of its vectors (`polymodal embed --side target`). "
        "Without it, the index in RUN/search_index (`polymodal embed --index`).",
    ),
    k: int = typer.Option(10, "--k", min=1, help="Hits per query."),
    out_file: Path = typer.Option(
        ..., "--out", "-o", help="CSV of hits: query (row position), rank (1 = best), target (row position), score."
    ),
    data_root: Path | None = DataRootOpt,
    threads: int | None = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """The top-K rows of a collection for each query row, by a retrieval model (exact for small collections,
    approximate above task.retrieval.exact_max_rows rows)."""
    _check_output(out_file)
    import numpy as np

    from .api import Predictor
    from .io import atomic_file
    from .retrieval import INDEX_DIR, hits_frame
    from .search import ApproximateIndex

    p = Predictor.load(run, verbose=not quiet)
    target: Any
    if collection is None:
        target = ApproximateIndex.load(run / INDEX_DIR)
    elif collection.suffix == ".npy":
        target = np.load(collection, allow_pickle=False)
    else:
        target = collection
    hits = p.search(queries, target, k, data_root=data_root)
    with atomic_file(out_file, "w", newline="", encoding="utf-8") as f:
        hits_frame(hits).to_csv(f, index=False)
    out.print(f"{hits.indices.shape[0]} queries x {hits.indices.shape[1]} hits saved to {out_file}")


@app.command()
@handles_errors
def pretrain(
    data: Path = typer.Argument(..., help="Unlabelled table with at least two input modalities (e.g. image, audio)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Run directory to create (then `fit --init` it)."),
    config: Path | None = ConfigOpt,
    data_root: Path | None = DataRootOpt,
    ignore: str | None = typer.Option(
        None, "--ignore", help="Comma-separated columns to leave out (e.g. a label column the table has)."
    ),
    encoder: list[str] | None = typer.Option(
        None,
        "--encoder",
        help="KIND_OR_COLUMN=NAME: the encoder of a kind or of one column (repeatable); the later fit must use the "
        "same encoders for the columns it starts from this run.",
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Random seed, 0 to 2**32 - 1 (default 0).", min=0, max=SEED_MAX
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace --out if it is a polymodal run directory or an empty folder."
    ),
    threads: int | None = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Self-supervised pre-training on unlabelled rows: cross-modal contrastive (InfoNCE between a row's
    modalities) plus masked-modality prediction; saves the encoders and processors as a run directory."""
    from .errors import RunDirError
    from .rundir import check_replaceable

    if out_dir.exists() and not overwrite:
        raise RunDirError(f"{out_dir} already exists; choose another --out or pass --overwrite")
    if overwrite:
        check_replaceable(out_dir)
    _check_output(out_dir, folder=True)
    cfg = _checked_config(config, None, None, encoder)
    from .api import Predictor  # after the config check: importing the trainer takes seconds

    p = Predictor.pretrain(data, config=cfg, ignore=_split(ignore), data_root=data_root, seed=seed, verbose=not quiet)
    p.save(out_dir, overwrite=overwrite)
    r = p.fit_result
    assert r is not None, "pretrain records its result"
    out.print(
        _metrics_table(
            f"held-out rows, cross-modal retrieval (best epoch {r.best_epoch + 1} of {r.epochs_run}; "
            f"{r.fit_seconds:.0f} s)",
            {k.removeprefix("val_"): v for k, v in r.validation.items()},
        )
    )
    out.print(f"saved to {out_dir}")


@app.command("zero-shot")
@handles_errors
def zero_shot(
    run: Path = typer.Argument(
        ..., help="Run directory of a retrieval model with a text column alone on one side (e.g. captions)."
    ),
    data: Path = typer.Argument(..., help="Table with the other side's columns (e.g. an image column)."),
    labels: str = typer.Option(..., "--labels", help="Comma-separated label names, e.g. --labels cat,dog."),
    prompt: str = typer.Option(
        "a photo of a {label}", "--prompt", help="Text each label is embedded as; {label} is replaced by the name."
    ),
    out_file: Path | None = typer.Option(
        None, "--out", "-o", help="CSV to write: prediction, then one score column per label (default: stdout)."
    ),
    data_root: Path | None = DataRootOpt,
    threads: int | None = ThreadsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Classify rows into label names never trained on, by the similarity of each row to each label's prompt."""
    from .errors import ConfigError

    names = _split(labels)
    if len(names) < 2:
        raise ConfigError(f"--labels needs at least two comma-separated names, not {labels!r}")
    if "{label}" not in prompt:
        raise ConfigError("--prompt must contain {label} where each label goes, e.g. 'a photo of a {label}'")
    _check_output(out_file)
    import sys

    from .api import Predictor
    from .io import atomic_file

    p = Predictor.load(run, verbose=not quiet)
    result = p.zero_shot(data, names, prompt, data_root=data_root)
    frame = result.scores.copy()
    frame.insert(0, "prediction", result.predictions)
    if out_file is None:
        frame.to_csv(sys.stdout, index=False)
        return
    with atomic_file(out_file, "w", newline="", encoding="utf-8") as f:
        frame.to_csv(f, index=False)
    out.print(f"{len(frame)} rows classified into {len(names)} labels, saved to {out_file}")


def main() -> None:  # pragma: no cover - console-script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
