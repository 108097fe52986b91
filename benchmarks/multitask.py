"""One multi-task model against two single-target models, on a generated table with two targets.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/multitask.py            # 3 seeds, 3,000 training rows

The table: numeric columns, a category and a short text whose keyword carries part of the signal. Both targets
come from one latent score s = x0 + 0.8·x1·x2 + 0.7·tanh(x3) + keyword + shop effect: ``recommended`` is its
tercile after noise (3 classes), ``rating`` is 2·s + 0.5·x4 + noise (regression); 20 % of the training rows have no
``rating`` (masked out of its loss in the multi-task model, dropped by the single-target regression model). Every
model is a default ``fit`` (same config, same training table, same seed); the test table is generated apart from
it. Each target's metric (accuracy; R²) is reported as mean ± standard deviation over the seeds, and the
difference multi-task − single-target in points (×100).

Writes benchmarks/results/multitask.json and the section between the multitask markers of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _report import machine, write_section

from polymodal import Predictor

ROOT = Path(__file__).resolve().parents[1]
CLASS, VALUE = "recommended", "rating"
WORDS = {1.0: ["excellent", "superb", "great"], -1.0: ["poor", "awful", "broken"], 0.0: ["okay", "average", "fine"]}
FILLER = ["the", "item", "arrived", "box", "colour", "size", "was", "and", "it", "looks", "feels", "today"]
SHOPS = {"north": 0.5, "south": -0.5, "east": 0.0, "west": 0.2}


def make_table(n: int, seed: int, missing_rating: float = 0.0) -> pd.DataFrame:
    """``n`` rows of the generated two-target table (``missing_rating``: share of rows whose rating is empty)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    keyword = rng.choice([-1.0, 0.0, 1.0], size=n)
    shop = rng.choice(list(SHOPS), size=n)
    notes = []
    for k in keyword:
        words = list(rng.choice(FILLER, size=6)) + [str(rng.choice(WORDS[k]))]
        rng.shuffle(words)
        notes.append(" ".join(words))
    s = x[:, 0] + 0.8 * x[:, 1] * x[:, 2] + 0.7 * np.tanh(x[:, 3]) + keyword + np.vectorize(SHOPS.get)(shop)
    noisy = s + rng.normal(scale=0.4, size=n)
    cuts = np.quantile(noisy, [1 / 3, 2 / 3])
    frame = pd.DataFrame({f"x{i}": x[:, i] for i in range(6)})
    frame["shop"], frame["note"] = shop, notes
    frame[CLASS] = np.array(["low", "mid", "high"], dtype=object)[np.digitize(noisy, cuts)]
    rating = 2 * s + 0.5 * x[:, 4] + rng.normal(scale=0.5, size=n)
    rating[rng.random(n) < missing_rating] = np.nan
    frame[VALUE] = rating
    return frame


def run(rows: int, tests: int, seeds: list[int], ablation: bool = True) -> dict:
    train = make_table(rows, 1000, missing_rating=0.2)
    test = make_table(tests, 2000)
    out: dict = {"rows": rows, "test_rows": tests, "seeds": seeds, "runs": []}
    for seed in seeds:
        res: dict = {"seed": seed}
        models: list[tuple[str, str | list[str], dict]] = [
            ("multitask", [CLASS, VALUE], {}),
            ("single_class", CLASS, {}),
            ("single_value", VALUE, {}),
        ]
        if ablation:  # the same multi-task model with its losses simply summed
            models.append(("multitask_sum", [CLASS, VALUE], {"task": {"target_loss": "sum"}}))
        for name, label, config in models:
            start = time.perf_counter()
            # one network each (preset fast): the default fit would add classical members to the single-target
            # models only (a multi-task model is not an ensemble), which is not the comparison made here
            p = Predictor(label, seed=seed, config=config, verbose=False, preset="fast").fit(train)
            m = p.evaluate(test)
            assert p.fit_result is not None
            res[name] = {
                "accuracy": m.get(f"{CLASS}/accuracy", m.get("accuracy")),
                "r2": m.get(f"{VALUE}/r2", m.get("r2")),
                "rmse": m.get(f"{VALUE}/rmse", m.get("rmse")),
                "epochs": p.fit_result.epochs_run,
                "best_epoch": p.fit_result.best_epoch + 1,
                "seconds": round(time.perf_counter() - start, 1),
            }
            print(seed, name, json.dumps(res[name]), flush=True)
        out["runs"].append(res)
    out["load_average"] = os.getloadavg()
    return out


def summarise(out: dict) -> tuple[str, bool]:
    def stats(model: str, metric: str) -> np.ndarray:
        return np.array([r[model][metric] for r in out["runs"]], dtype=float) * 100

    rows, ok = [], True
    ablated = "multitask_sum" in out["runs"][0]
    for target, metric, single in ((CLASS, "accuracy", "single_class"), (VALUE, "r2", "single_value")):
        mt, st = stats("multitask", metric), stats(single, metric)
        diff = mt - st
        ok &= bool(diff.mean() >= -1.0)
        cells = [f"{mt.mean():.1f} ± {mt.std():.1f}", f"{st.mean():.1f} ± {st.std():.1f}"]
        cells.append(f"{diff.mean():+.1f} ± {diff.std():.1f}")
        if ablated:
            summed = stats("multitask_sum", metric)
            cells += [f"{summed.mean():.1f} ± {summed.std():.1f}", f"{(summed - st).mean():+.1f}"]
        rows.append(f"| {target} | {metric} ×100 | " + " | ".join(cells) + " |")
    seconds = {
        k: np.mean([r[k]["seconds"] for r in out["runs"]]) for k in ("multitask", "single_class", "single_value")
    }
    load = ", ".join(f"{v:.1f}" for v in out["load_average"])
    lines = [
        "## Multi-task",
        "",
        "```",
        "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/multitask.py",
        "```",
        "",
        f"One multi-task model (`label=['{CLASS}', '{VALUE}']`) against two single-target models on a generated "
        f"table ({out['rows']:,} training rows: six numeric columns, a category, a short text whose keyword carries "
        f"part of the signal; both targets come from one latent score; 20 % of the training rows have no "
        f'`{VALUE}`), scored on {out["test_rows"]:,} separately generated test rows. One network per model (`preset="fast"`), '
        f"seeds {', '.join(map(str, out['seeds']))}; mean ± standard deviation over the seeds, difference "
        "multi-task − single-target in points.",
        "",
        "| target | metric | multi-task | single-target | difference |"
        + (" multi-task, losses summed | its difference |" if ablated else ""),
        "|---|---|---|---|---|" + ("---|---|" if ablated else ""),
        *rows,
        "",
        "The multi-task model combines its targets' losses as Σ weight · log(loss + 0.001) (`task.target_loss: "
        "log`, the default). "
        + (
            "The last two columns are the same model with the losses simply summed (`target_loss: sum`): the "
            "classification's cross-entropy, several times the well-learned regression's standardised squared "
            "error, then drives the shared network and early stopping, and the regression falls behind."
            if ablated
            else ""
        ),
        "",
        f"Fit time per model (mean): multi-task {seconds['multitask']:.0f} s, single-target "
        f"{seconds['single_class']:.0f} s + {seconds['single_value']:.0f} s. "
        f"{'The multi-task model matches (within 1 point) or beats each single-target model.' if ok else 'NOT MET: the multi-task model is more than 1 point below a single-target model.'}",
        "",
        f"Load average at the end: {load} ({machine()}).",
    ]
    return "\n".join(lines), ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=3000, help="training rows")
    ap.add_argument("--tests", type=int, default=1000, help="test rows")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--no-ablation", action="store_true", help="skip the multi-task model with summed losses")
    ap.add_argument("--no-write", action="store_true", help="print the table; write neither JSON nor docs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = run(args.rows, args.tests, list(range(args.seeds)), ablation=not args.no_ablation)
    body, ok = summarise(out)
    print(body)
    if not args.no_write:
        (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
        (ROOT / "benchmarks" / "results" / "multitask.json").write_text(json.dumps(out, indent=2) + "\n")
        write_section(ROOT / "docs" / "BENCHMARKS.md", "multitask", body)
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
