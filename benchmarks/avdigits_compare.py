"""AV-digits: every fusion method and each single modality over 3 seeds, missing-modality training, robustness.

    .venv/bin/python benchmarks/avdigits_compare.py                # ~5 hours on 2 unloaded CPU cores; resumable

Phases (all by default; each can be run alone with --phase, and finished runs are reused on a rerun):

  compare     polymodal.compare on train.csv / test.csv (the protocol's 20,000 / 10,000 rows) with --seeds seeds and
              --epochs fixed epochs, everything else default. Equivalent CLI:
              polymodal compare data/avdigits/train.csv --label label --test data/avdigits/test.csv \\
                  --config <{ignore: [id, split], training: {max_epochs: 5}}> --seeds 3 --keep-runs --resume
  missing     concat trained with modality dropout (--dropout) under the same protocol, seed 0; it and the compare's
              concat seed-0 model are evaluated on the test rows with the audio column emptied and with the image
              column emptied, against the image-only and audio-only models.
  robustness  Predictor.evaluate(..., robustness=True) for late fusion and both concat models (seed 0) on
              --robustness-rows test rows, late fusion's curves being the baseline of effective robustness (as in
              MultiBench).
  report      writes the avdigits_compare section of docs/BENCHMARKS.md from the saved results (whatever is finished
              so far), and copies its plots to docs/figures/avdigits/.

Results go to benchmarks/results/avdigits_compare/ (compare.md/.csv/.png, runs.jsonl, runs/, missing.json, ...).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _avdigits import IGNORE, LABEL, LINEAR_LATE, LUDWIG, ROOT, ensure_data
from _report import machine, write_section

import polymodal
from polymodal import Predictor
from polymodal.evaluation.compare import summarise, write_outputs
from polymodal.registry import FUSIONS

SECTION = "avdigits_compare"
OUT = ROOT / "benchmarks" / "results" / "avdigits_compare"  # --out replaces it (e.g. for a quick --limit trial)
FIGURES = ROOT / "docs" / "figures" / "avdigits"


def config(epochs: int, **training) -> dict:
    return {"ignore": IGNORE, "training": {"max_epochs": epochs, **training}}


def split(data: Path, name: str, args: argparse.Namespace) -> pd.DataFrame:
    frame = pd.read_csv(data / f"{name}.csv")
    return frame if args.limit is None else frame.head(args.limit)


def phase_compare(data: Path, args: argparse.Namespace) -> pd.DataFrame:
    start = time.perf_counter()
    table = polymodal.compare(
        split(data, "train", args),
        LABEL,
        test_data=split(data, "test", args),
        fusions=args.fusions,
        single_modalities=not args.no_single,
        seeds=args.seeds,
        config=config(args.epochs),
        data_root=data,
        out_dir=OUT,
        keep_runs=True,
        resume=True,
        verbose=True,
    )
    print(f"compare: {time.perf_counter() - start:.0f} s", flush=True)
    return table


def _without(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    out = frame.copy()
    out[column] = None  # an empty cell: the modality is absent for every row
    return out


def phase_missing(data: Path, args: argparse.Namespace) -> dict:
    test = split(data, "test", args)
    dropout_dir = OUT / f"dropout{args.dropout}-concat-seed0"
    if not (dropout_dir / "polymodal.json").is_file():
        start = time.perf_counter()
        p = Predictor(
            LABEL, config=config(args.epochs, modality_dropout=args.dropout), data_root=data, seed=0, verbose=True
        ).fit(split(data, "train", args))
        print(f"dropout model: {time.perf_counter() - start:.0f} s", flush=True)
        p.save(dropout_dir)
    models = {"without dropout": OUT / "runs" / "fusion-concat-seed0", f"modality dropout {args.dropout}": dropout_dir}
    result: dict = {"dropout": args.dropout, "epochs": args.epochs, "models": {}}
    for name, path in models.items():
        p = Predictor.load(path, verbose=False)
        scores = {}
        for case, frame in (
            ("both present", test),
            ("audio missing", _without(test, "audio")),
            ("image missing", _without(test, "image")),
        ):
            scores[case] = round(p.evaluate(frame, data_root=data)["accuracy"], 4)
        result["models"][name] = scores
        print(name, scores, flush=True)
    (OUT / "missing.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def _robustness_models(args: argparse.Namespace) -> list[tuple[str, Path]]:
    return [
        ("late", OUT / "runs" / "fusion-late-seed0"),
        ("concat", OUT / "runs" / "fusion-concat-seed0"),
        (f"concat-dropout{args.dropout}", OUT / f"dropout{args.dropout}-concat-seed0"),
    ]


def phase_robustness(data: Path, args: argparse.Namespace) -> None:
    """Sweep late fusion first: it is MultiBench's reference curve for the others' effective robustness."""
    test = split(data, "test", args)
    test = test.sample(min(args.robustness_rows, len(test)), random_state=0)
    baseline = None
    for tag, path in _robustness_models(args):
        p = Predictor.load(path, verbose=False)
        out_dir = OUT / f"robustness-{tag}"
        p.evaluate(test, data_root=data, robustness=True, robustness_out=out_dir, robustness_baseline=baseline)
        baseline = baseline or out_dir / "robustness.json"
        print(f"robustness {tag}: {out_dir}", flush=True)


def _first_table(markdown: str) -> str:
    """The summary table of a robustness.md (one row per modality and corruption), without the long per-level one."""
    block = markdown.split("\n| ", 1)[1].split("\n\n", 1)[0]
    return "| " + block


def _logged_runs() -> list[dict]:
    """The runs of runs.jsonl made with the latest settings (a torn last line is skipped, as compare does)."""
    runs = []
    for line in (OUT / "runs.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            runs.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    latest = runs[-1]["settings"]
    return [{k: v for k, v in r.items() if k != "settings"} for r in runs if r["settings"] == latest]


def phase_report(args: argparse.Namespace, command: str, docs: bool = True) -> None:
    runs = _logged_runs()
    summary = summarise(pd.DataFrame(runs))
    # Single modalities first, then fusions by name, whatever order the runs were made in.
    summary = summary.sort_values(
        ["kind", "variant"], key=lambda c: c.map({"modality": 0, "fusion": 1}) if c.name == "kind" else c, kind="stable"
    ).reset_index(drop=True)
    write_outputs(summary, OUT, int(summary["seeds"].max()))
    names = FUSIONS.names() if args.fusions == "all" else args.fusions.split(",")
    counts = pd.Series([r["variant"] for r in runs]).value_counts()
    unrun = [n for n in names if f"fusion: {n}" not in counts]  # methods added after the comparison was made
    expected = (len(names) - len(unrun) + 2) * args.seeds  # + image only, audio only
    status = (
        "all runs finished"
        if len(runs) >= expected
        else f"**in progress: {len(runs)} of {expected} runs finished** (the command goes on from there; finished "
        f"runs are reused), so some variants have fewer seeds than {args.seeds}"
    )
    if unrun:
        status += (
            f"; {', '.join(f'`{n}`' for n in unrun)}, added to polymodal after this comparison was made, "
            "has no run yet: the same command adds it"
        )
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {machine()}  ",
        f"Protocol: the AV-digits split (20,000 training rows, of which polymodal holds out 15% for validation; "
        f"10,000 test rows), {args.epochs} epochs per run (`training.max_epochs: {args.epochs}`), every other "
        f"setting default, {args.seeds} seeds per variant; single-modality models are the same network with the other "
        f"column ignored. References: Ludwig 0.11 defaults {LUDWIG}, linear late fusion {LINEAR_LATE}.  ",
        f"Status: {status}.{'  ' if args.note else ''}",
        *([args.note] if args.note else []),
        "",
        f"| variant | test accuracy (mean ± std over seeds) | min | seeds | beats {LINEAR_LATE} | parameters | "
        f"fit s (mean) | inference ms/row |",
        "|---|---|---|---|---|---|---|---|",
    ]
    per_variant: dict[str, list[float]] = {}
    for r in runs:
        per_variant.setdefault(r["variant"], []).append(r["accuracy"])
    for _, r in summary.iterrows():
        accs = per_variant[r["variant"]]
        beats = "" if r["kind"] == "modality" else ("yes" if min(accs) > LINEAR_LATE else "**no**")
        lines.append(
            f"| {r['variant']} | {r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f} | {min(accs):.4f} | "
            f"{int(r['seeds'])} | {beats} | {int(r['parameters']):,} | {r['fit_seconds']:.0f} | "
            f"{r['infer_ms_per_row']:.3f} |"
        )
    fused = summary[summary["kind"] == "fusion"].sort_values("accuracy_mean", ascending=False)
    best = fused.iloc[0]
    lines += [
        "",
        f"Best fusion: **{best['variant']}**, {best['accuracy_mean']:.4f} mean test accuracy.",
        "",
        "![compare](figures/avdigits/compare.png)",
        "",
    ]
    FIGURES.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(OUT / "compare.png", FIGURES / "compare.png")
    missing_file = OUT / "missing.json"
    single = summary.set_index("variant")["accuracy_mean"]
    img, aud = single.get("image only"), single.get("audio only")
    if missing_file.is_file() and img is not None and aud is not None:
        m = json.loads(missing_file.read_text())
        lines += [
            f"**Missing modality at test time** (concat, seed 0, {m['epochs']} epochs; the column emptied for "
            f"every test row). Image-only model: {img:.4f}; audio-only model: {aud:.4f} (means over seeds).",
            "",
            "| model | both present | audio missing (vs image only) | image missing (vs audio only) |",
            "|---|---|---|---|",
        ]
        for name, s in m["models"].items():
            lines.append(
                f"| concat, {name} | {s['both present']:.4f} | {s['audio missing']:.4f} "
                f"({s['audio missing'] - img:+.4f}) | {s['image missing']:.4f} ({s['image missing'] - aud:+.4f}) |"
            )
        lines.append("")
    for tag, _ in _robustness_models(args):
        md = OUT / f"robustness-{tag}" / "robustness.md"
        if md.is_file():
            against = "flat baseline" if tag == "late" else "against late fusion's curve (MultiBench's reference)"
            lines += [
                f"**Robustness sweep, {tag}, seed 0** ({args.robustness_rows} test rows; effective robustness "
                f"{against}; full curves in `{md.parent.relative_to(ROOT) if md.is_relative_to(ROOT) else md.parent}/`):",
                "",
                _first_table(md.read_text(encoding="utf-8")),
                "",
            ]
            for png in sorted(md.parent.glob("robustness_*.png")):
                shutil.copyfile(png, FIGURES / f"{tag}-{png.name}")
                lines.append(f"![{tag} {png.name}](figures/avdigits/{tag}-{png.name})")
            lines.append("")
    body = "## AV-digits: fusion methods compared\n\n" + "\n".join(lines)
    if not docs:
        (OUT / "report.md").write_text(body, encoding="utf-8")
        print(body, flush=True)
        return
    write_section(ROOT / "docs" / "BENCHMARKS.md", SECTION, body)
    print(f"wrote the {SECTION} section of docs/BENCHMARKS.md", flush=True)


def main() -> None:
    global OUT, FIGURES
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "avdigits")
    ap.add_argument("--phase", choices=["all", "compare", "missing", "robustness", "report"], default="all")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument(
        "--fusions",
        default="all",
        help="'all' or comma-separated names (a part of the comparison; a later full run reuses its runs)",
    )
    ap.add_argument("--no-single", action="store_true", help="skip the single-modality models")
    ap.add_argument("--dropout", type=float, default=0.5, help="modality dropout rate of the missing-modality model")
    ap.add_argument("--robustness-rows", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=OUT, help="results folder")
    ap.add_argument("--note", default="", help="a sentence for the report (e.g. how loaded the machine was)")
    ap.add_argument(
        "--limit",
        type=int,
        default=None,
        help="use only the first N training and test rows (a quick trial: docs are not touched)",
    )
    args = ap.parse_args()
    OUT = args.out.resolve()
    if args.limit is not None:
        FIGURES = OUT / "figures"
    # The command that makes the figures: the phase flags only say which part ran last.
    argv, skip = [], False
    for a in sys.argv[1:]:
        if skip or a == "--phase" or a.startswith("--phase=") or a.startswith("--note"):
            skip = a in ("--phase", "--note")
            continue
        argv.append(a)
    command = "python benchmarks/avdigits_compare.py " + " ".join(shlex.quote(a) for a in argv)
    data = args.data.resolve()
    ensure_data(data)
    OUT.mkdir(parents=True, exist_ok=True)
    if args.phase in ("all", "compare"):
        phase_compare(data, args)
    if args.phase in ("all", "missing"):
        phase_missing(data, args)
    if args.phase in ("all", "robustness"):
        phase_robustness(data, args)
    if args.phase in ("all", "report"):
        phase_report(args, command.strip(), docs=args.limit is None)


if __name__ == "__main__":
    main()
