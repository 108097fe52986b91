"""Anomaly detection on AV-digits: does a fused autoencoder notice a row whose spoken digit is not the image's?

    .venv/bin/python benchmarks/anomaly.py                         # the reduced run in docs/BENCHMARKS.md
    .venv/bin/python benchmarks/anomaly.py --train-rows 20000 --test-rows 10000 --epochs 20   # the full split

AV-digits (../shared/data/avdigits, built into --data if missing) pairs a degraded MNIST digit with a noisy spoken
digit of the same class. The test rows are a random --test-rows of the test split in which --anomaly-rate of the rows
get the audio file of another test row whose digit is different (``is_anomaly`` = 1). Three reconstruction models
(``problem_type="reconstruction"``, no label; the ``label`` column is ignored) are trained on --train-rows clean
training rows with the same settings:

  fused        image + audio through one bottleneck, and (``--agreement`` > 0) the cross-modal agreement term: the
               image's and the audio's embeddings trained to agree, their disagreement the ``anomaly_crossmodal``
               score
  image only   the audio column ignored: it cannot see the swap (expected ROC-AUC near 0.5)
  audio only   the image column ignored: the same

and scored with ``evaluate(test, anomaly_label="is_anomaly")``: ROC-AUC and average precision of ``anomaly_score``
(``--score``), and the ROC-AUC of every row score the model has (joint, cross, agreement, joint+agreement,
cross+agreement). Equivalent CLI for the fused model:

    polymodal fit runs/anomaly/train.csv --data-root data/avdigits --problem-type reconstruction \
        --ignore id,split,label --config cfg.yaml --out runs/ae
    polymodal evaluate runs/ae runs/anomaly/test_swapped.csv --data-root data/avdigits --anomaly-label is_anomaly

Writes benchmarks/results/anomaly.json and the anomaly section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _avdigits import ROOT, ensure_data
from _report import machine, write_section

from polymodal import Predictor

SECTION = "anomaly"
MODELS = {"fused": [], "image only": ["audio"], "audio only": ["image"]}


def swapped(test: pd.DataFrame, rate: float, seed: int) -> pd.DataFrame:
    """``test`` with ``rate`` of its rows given the audio of another row whose digit differs (``is_anomaly``)."""
    rng = np.random.default_rng([seed, 5])
    out = test.copy().reset_index(drop=True)
    out["is_anomaly"] = 0
    chosen = rng.choice(len(out), size=max(1, round(rate * len(out))), replace=False)
    labels = out["label"].to_numpy()
    audio = out["audio"].to_numpy().copy()
    for i in chosen:
        others = np.flatnonzero(labels != labels[i])
        audio[i] = out["audio"].iloc[int(rng.choice(others))]
    out["audio"] = audio
    out.loc[chosen, "is_anomaly"] = 1
    return out


def config(args: argparse.Namespace) -> dict:
    return {
        "training": {"max_epochs": args.epochs, "batch_size": 64, "seed": args.seed, "threads": args.threads},
        "processing": {"image_augment": False, "audio_augment": False},
        "task": {
            "reconstruction": {
                "latent_dim": args.latent,
                "modality_dropout": args.modality_dropout,
                "variational": args.variational,
                "agreement": args.agreement,
                "agreement_temperature": args.temperature,
                "score": args.score,
            }
        },
    }


def load_avg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "avdigits", help="AV-digits folder (built if absent)")
    ap.add_argument("--train-rows", type=int, default=3000, help="clean training rows (random, from the train split)")
    ap.add_argument("--test-rows", type=int, default=2000, help="test rows (random, from the test split)")
    ap.add_argument("--anomaly-rate", type=float, default=0.05, help="share of test rows whose audio is swapped")
    ap.add_argument("--epochs", type=int, default=8, help="training epochs at most (early stopping on validation)")
    ap.add_argument("--latent", type=int, default=16, help="task.reconstruction.latent_dim")
    ap.add_argument("--modality-dropout", type=float, default=0.25, help="task.reconstruction.modality_dropout")
    ap.add_argument("--variational", action="store_true", help="task.reconstruction.variational")
    ap.add_argument("--agreement", type=float, default=4.0, help="task.reconstruction.agreement (0 = off)")
    ap.add_argument("--temperature", type=float, default=0.1, help="task.reconstruction.agreement_temperature")
    ap.add_argument("--score", default="joint+agreement", help="task.reconstruction.score (joint, cross, ...)")
    ap.add_argument("--threads", type=int, default=1, help="training.threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=list(MODELS), action="append", help="run only these models (repeatable)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "anomaly.json")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "anomaly", help="where the sampled tables go")
    ap.add_argument("--no-docs", action="store_true", help="do not write the docs/BENCHMARKS.md section")
    ap.add_argument(
        "--keep",
        action="store_true",
        help="with --only: keep the other models' results from --out (e.g. the single-modality baselines, which "
        "--agreement and --temperature do not change; a model with one modality has no agreement term)",
    )
    args = ap.parse_args()

    manifest = ensure_data(args.data)
    frame = pd.read_csv(manifest)
    rng = np.random.default_rng(args.seed)
    train_all, test_all = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    train = train_all.iloc[np.sort(rng.choice(len(train_all), args.train_rows, replace=False))]
    test = swapped(
        test_all.iloc[np.sort(rng.choice(len(test_all), args.test_rows, replace=False))], args.anomaly_rate, args.seed
    )
    args.work.mkdir(parents=True, exist_ok=True)  # (the tables' file paths resolve against --data: data_root)
    train_path, test_path = args.work / "train.csv", args.work / "test_swapped.csv"
    train.to_csv(train_path, index=False)
    test.to_csv(test_path, index=False)

    command = "python benchmarks/anomaly.py " + shlex.join(sys.argv[1:])
    results: dict = {
        "command": command.strip(),
        "machine": machine(),
        "cpu_count": os.cpu_count(),
        "train_rows": args.train_rows,
        "test_rows": args.test_rows,
        "anomalies": int(test["is_anomaly"].sum()),
        "config": config(args),
        "models": {},
    }
    if args.keep and args.out.is_file():
        kept = json.loads(args.out.read_text(encoding="utf-8"))["models"]
        results["models"] = {name: {**m, "kept": True} for name, m in kept.items()}
        results["kept_from"] = str(args.out)
    for name, dropped in MODELS.items():
        if args.only and name not in args.only:
            continue
        results["models"].pop(name, None)
        before = load_avg()
        start = time.perf_counter()
        p = Predictor(
            problem_type="reconstruction",
            config=config(args),
            ignore=["id", "split", "label", *dropped],
            data_root=args.data,
            verbose=False,
        ).fit(train_path)
        fit_s = time.perf_counter() - start
        metrics = p.evaluate(test_path, anomaly_label="is_anomaly", data_root=args.data)
        r = p.fit_result
        results["models"][name] = {
            **{k: round(float(v), 4) for k, v in metrics.items()},
            "fit_seconds": round(fit_s, 1),
            "epochs_run": None if r is None else r.epochs_run,
            "best_epoch": None if r is None else r.best_epoch,
            "load_before": before,
            "load_after": load_avg(),
        }
        print(name, json.dumps(results["models"][name]), flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if not args.no_docs:
        write_section(ROOT / "docs" / "BENCHMARKS.md", SECTION, report(results))


#: the ROC-AUC columns of the report after the default score's: metric → header
AUCS = {
    "roc_auc_joint": "joint",
    "roc_auc_cross": "cross",
    "roc_auc_agreement": "agreement",
    "roc_auc_joint+agreement": "joint+agreement",
    "roc_auc_image": "image score",
    "roc_auc_audio": "audio score",
}


def _cell(m: dict, key: str) -> str:
    return f"{m[key]:.3f}" if key in m else "—"


def report(results: dict) -> str:
    rows = "\n".join(
        f"| {name}{' (kept)' if m.get('kept') else ''} | {_cell(m, 'roc_auc')} | {_cell(m, 'average_precision')} | "
        + " | ".join(_cell(m, key) for key in AUCS)
        + f" | {m['epochs_run']} | {m['fit_seconds']:.0f} s | {m['load_before']} / {m['load_after']} |"
        for name, m in results["models"].items()
    )
    score = results["config"]["task"]["reconstruction"]["score"]
    kept = ""
    if any(m.get("kept") for m in results["models"].values()):
        kept = (
            "\n\n(kept): a result of an earlier run of this script on the same rows and seed (`--keep`), whose "
            "other settings do not change it (a single-modality model has no agreement term)."
        )
    rate = results["anomalies"] / results["test_rows"]
    return f"""## Anomaly detection: AV-digits with swapped spoken digits (reconstruction)

`{results["command"]}` ({results["machine"]}; the machine was shared with other jobs, so the times are noisy:
load average before / after each fit in the last column).

{results["train_rows"]} clean training rows; {results["test_rows"]} test rows of which {results["anomalies"]}
({rate:.0%}) had their audio swapped for another row's with a different digit. `problem_type="reconstruction"`,
config `{json.dumps(results["config"])}`. ROC-AUC / AP: of `anomaly_score` against `is_anomaly` (chance: 0.5 /
{rate:.2f}) with `score: {score}`; then the ROC-AUC of each row score of the same model: joint (the mean of the
modalities' z-scored reconstruction errors), cross (each modality reconstructed from the other alone), agreement
(`anomaly_crossmodal`: the z-scored 1 - cosine of the row's image and audio embeddings; "—": a single-modality
model has no such term and its agreement scores fall back to joint), joint+agreement (the two added), and
`anomaly_image` / `anomaly_audio` alone (joint).{kept}

| model | ROC-AUC | AP | {" | ".join(AUCS.values())} | epochs | fit | load avg |
|---|---|---|{"---|" * len(AUCS)}---|---|---|
{rows}
"""


if __name__ == "__main__":
    main()
