"""AV-digits for the benchmark scripts: build it from ../shared/data/avdigits if missing, split files, constants."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT.parent / "shared" / "data" / "avdigits" / "build.py"
LABEL, IGNORE = "label", ["id", "split"]
LUDWIG = 0.955  # Ludwig 0.11.0 defaults on the same split (../shared/data/avdigits/README.md)
LINEAR_LATE = 0.910  # logistic-regression late fusion, same README


def ensure_data(data: Path) -> Path:
    """Build AV-digits into ``data`` when its manifest is missing; write train.csv and test.csv beside it."""
    manifest = data / "manifest.csv"
    if not manifest.is_file():
        if not BUILD.is_file():
            sys.exit(
                f"error: {manifest} does not exist and the builder {BUILD} is missing.\n"
                f"AV-digits is built from ../shared/data (MNIST + FSDD); put the project's shared/ folder beside "
                f"the repository, or pass --data pointing at an already built copy."
            )
        print(f"building AV-digits into {data} ...", flush=True)
        subprocess.run([sys.executable, str(BUILD), "--out", str(data)], check=True)
    frame = pd.read_csv(manifest)
    for split in ("train", "test"):  # so that the CLI commands in the docs work on the same rows
        path = data / f"{split}.csv"
        if not path.is_file():
            frame[frame["split"] == split].to_csv(path, index=False)
    return manifest
