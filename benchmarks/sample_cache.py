"""One training epoch from the warm on-disk sample store vs decoded items held in memory (issue 20, acceptance 2).

On AV-digits (image + audio files): fit the processors and the network once on a small subset (setup, untimed),
decode ``--rows`` training rows twice, into memory (the old path: ``store=None``) and into an empty on-disk store
(cold), decode them again from the store (warm: nothing is decoded), then time full training epochs (loader with
augmentation, forward, backward, AdamW step) alternating the two in one process, ``--repeats`` times each.

    OMP_NUM_THREADS=1 python benchmarks/sample_cache.py --data ../main/data/avdigits --rows 5000 --repeats 3

Acceptance: the warm store's epoch is at least as fast as the in-memory one (min and median over the repeats).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from _avdigits import IGNORE, LABEL, ROOT, ensure_data

from polymodal import Predictor
from polymodal.data.dataset import Prepared, make_loader, prepare
from polymodal.data.processors import LoadContext
from polymodal.data.sample_cache import SampleStore
from polymodal.pipeline import label_values


def epoch(pipeline, prepared: Prepared, batch_size: int, workers: int) -> float:
    """Seconds of one training epoch over ``prepared``."""
    model, task = pipeline.model, pipeline.task
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loader = make_loader(prepared, pipeline.processors, batch_size, True, task.target_dtype, workers, seed=0)
    t0 = time.perf_counter()
    for batch in loader:
        loss = model.loss(model.outputs(batch), batch.target, task)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "avdigits")
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers (0: decode/collate in this process)")
    ap.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    ensure_data(args.data)
    frame = pd.read_csv(args.data / "train.csv").head(args.rows)
    os.environ["POLYMODAL_SAMPLE_CACHE"] = "memory"  # the setup fit stays out of the store under test
    setup = Predictor(
        LABEL,
        preset="fast",
        ignore=IGNORE,
        data_root=args.data,
        config={"training": {"max_epochs": 1}},
        seed=0,
        verbose=False,
    ).fit(frame.head(500))
    pipeline = setup.pipeline
    assert pipeline is not None
    ctx = LoadContext(args.data.resolve(), pipeline.config.limits)
    targets = pipeline.task.encode_target(label_values(frame, LABEL))

    def decode(store: SampleStore | None) -> tuple[Prepared, float]:
        t0 = time.perf_counter()
        p = prepare(frame, pipeline.processors, ctx, targets=targets, progress=False, store=store)
        return p, time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        store = SampleStore(tmp)
        in_memory, t_memory = decode(None)
        _, t_cold = decode(store)
        decoded_cold = store.misses
        on_disk, t_warm = decode(SampleStore(tmp))  # a new process's view: every item a hit, none decoded
        times: dict[str, list[float]] = {"memory": [], "disk": []}
        for r in range(args.repeats):
            order = ["memory", "disk"] if r % 2 == 0 else ["disk", "memory"]
            for name in order:
                times[name].append(
                    epoch(pipeline, in_memory if name == "memory" else on_disk, args.batch_size, args.workers)
                )
        size = store.info()["bytes"]
    result = {
        "rows": len(frame),
        "decode_s": {"memory": round(t_memory, 2), "disk_cold": round(t_cold, 2), "disk_warm": round(t_warm, 2)},
        "items_decoded_cold": decoded_cold,
        "store_mb": round(size / 2**20, 1),
        "epoch_s": {
            k: {"min": round(min(v), 2), "median": round(statistics.median(v), 2), "all": [round(x, 2) for x in v]}
            for k, v in times.items()
        },
        "warm_over_memory": {
            "min": round(min(times["disk"]) / min(times["memory"]), 3),
            "median": round(statistics.median(times["disk"]) / statistics.median(times["memory"]), 3),
        },
        "workers": args.workers,
        "load_average": {"before": load_before, "after": Path("/proc/loadavg").read_text().split()[:3]},
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
