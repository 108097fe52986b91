"""Shared fixtures: tiny generated multimodal tables and one fitted tiny model reused across tests."""

from __future__ import annotations

import copy
import logging
import os
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

# Nothing in the tests downloads: Hugging Face loads read local folders only (set before huggingface_hub is
# imported, which reads it once).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from polymodal import Predictor
from polymodal.datasets.synthetic import generate

REPO_ROOT = Path(__file__).resolve().parents[1]

# The tiny models here are far too small to gain from intra-op threads, and on a shared 2-core machine
# oversubscribed threads make every training step ~10x slower.
torch.set_num_threads(1)

TINY_CONFIG = {
    "training": {"max_epochs": 2, "batch_size": 16},
    "encoders": {
        "image": {"name": "image_cnn", "width": 8, "dim": 16, "stages": 2},
        "audio": {"name": "audio_cnn", "width": 8, "dim": 16, "stages": 2},
        "text": {"name": "text_rnn", "hidden": 16, "embedding_dim": 16, "dim": 16},
        "tabular": {"name": "tabular_mlp", "hidden": 16, "dim": 16},
    },
    "fusion": {"dim": 32},
}


def tiny_config(**training) -> dict:
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["training"].update(training)
    return cfg


def make_table(
    out_dir: Path, n: int, seed: int = 0, prefix: str = "", name: str = "data.csv", missing_rate: float = 0.02
) -> Path:
    """Generate ``n`` synthetic rows with their files under ``out_dir``; write them as ``out_dir/name``.

    The tiny tables get a binary label (is the demo's label ``medium``?) so that the binary-only paths (ROC-AUC)
    are exercised; the demo's own three-class label is tested in test_synthetic.py.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = generate(out_dir, n, seed=seed, prefix=prefix, missing_rate=missing_rate)
    frame["label"] = frame["label"].map(lambda v: "yes" if v == "medium" else "no")
    path = out_dir / name
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session", autouse=True)
def _feature_cache_dir(tmp_path_factory):
    """Frozen-backbone features and decoded samples go to per-session folders, never the user's ~/.cache."""
    names = {"POLYMODAL_CACHE_DIR": "feature-cache", "POLYMODAL_SAMPLE_CACHE": "sample-cache"}
    old = {name: os.environ.get(name) for name in names}
    for name, folder in names.items():
        os.environ[name] = str(tmp_path_factory.mktemp(folder))
    yield
    for name, value in old.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def _polymodal_logs_propagate():
    """The CLI sets propagate=False on the 'polymodal' logger; restore it so caplog sees later warnings."""
    yield
    log = logging.getLogger("polymodal")
    log.propagate = True
    log.handlers[:] = []
    log.setLevel(logging.NOTSET)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A data root holding train.csv (80 rows) and test.csv (30 rows) plus their images and audio."""
    root = tmp_path_factory.mktemp("data")
    make_table(root, 80, seed=1, prefix="train_", name="train.csv")
    make_table(root, 30, seed=2, prefix="test_", name="test.csv")
    return root


@pytest.fixture(scope="session")
def train_csv(data_dir) -> Path:
    return data_dir / "train.csv"


@pytest.fixture(scope="session")
def test_csv(data_dir) -> Path:
    return data_dir / "test.csv"


@pytest.fixture(scope="session")
def fitted(train_csv) -> Predictor:
    """One tiny fitted classifier, shared by every test that only reads from it."""
    return Predictor("label", config=tiny_config(), verbose=False, seed=0, preset="fast").fit(train_csv)


@pytest.fixture(scope="session")
def run_dir(fitted, tmp_path_factory) -> Path:
    """The shared predictor saved as a run directory (treat as read-only)."""
    return fitted.save(tmp_path_factory.mktemp("runs") / "run")


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    """A fresh 40-row table in a per-test folder (for tests that modify the table or its files)."""
    return make_table(tmp_path / "data", 40, seed=3, prefix="t_", missing_rate=0.0)


@pytest.fixture
def small_frame(test_csv) -> pd.DataFrame:
    return pd.read_csv(test_csv)


@pytest.fixture(scope="session")
def tiny_config_file(tmp_path_factory) -> Path:
    import yaml

    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(max_epochs=1)), encoding="utf-8")
    return path


@pytest.fixture
def cli():
    """Invoke the typer app in-process; returns the result (stdout and stderr kept apart)."""
    from typer.testing import CliRunner

    from polymodal.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


def real_batch(train_csv: Path, data_dir: Path, n: int):
    """A collated batch of the first ``n`` training rows where row 0 lacks the image and row 1 keeps only the
    tabular modality; processors fitted on the whole table. Returns (config, schema, modalities, processors, batch)."""
    from polymodal.config import PolymodalConfig
    from polymodal.data.dataset import Collator, prepare
    from polymodal.data.processors import LoadContext, build_processors
    from polymodal.schema import infer_schema

    full = pd.read_csv(train_csv)
    frame = full.iloc[:n].copy()
    frame.loc[frame.index[0], "image"] = None
    frame.loc[frame.index[1], ["image", "audio", "text"]] = None
    cfg = PolymodalConfig.from_any(tiny_config())
    schema = infer_schema(full, "label")
    modalities, procs = build_processors(schema, cfg)
    ctx = LoadContext(data_dir.resolve(), cfg.limits)
    for p in procs.values():
        p.fit(full, ctx)
    batch = Collator(prepare(frame, procs, ctx, progress=False), procs, False, torch.long)(list(range(n)))
    return cfg, schema, modalities, procs, batch


SYSTEM_DEPS_HINT = "install it with `bash scripts/install_system_deps.sh` (as root; `make test` runs it)"


@pytest.fixture(scope="session")
def espeak_ng() -> str:
    """The espeak-ng program for the spoken-question data; skips, naming the package and how to get it, when it is
    absent. Detection only: system packages are installed by the set-up step, never from inside pytest."""
    import shutil

    path = shutil.which("espeak-ng")
    if path is None:
        reason = (
            f"spoken-question data needs the espeak-ng program (Debian package espeak-ng), not installed: "
            f"{SYSTEM_DEPS_HINT}"
        )
        pytest.skip(reason)  # espeak-ng absent: only where the set-up step could not install it
    return path


def free_port() -> int:
    """A free TCP port on the loopback address, for a server started by a test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_serving(proc: subprocess.Popen, base: str, timeout: float = 90) -> None:
    """Poll ``base``/health until a server a test started answers 200 (failing with its stderr if it exits)."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "the server exited"
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"server did not start within {timeout:g} s"
        time.sleep(0.3)


def stop(proc: subprocess.Popen) -> None:
    """End a server a test started: terminate, then kill if it does not exit within 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def study_trials(out: Path) -> list:
    """The trials of the tuning study in ``out`` as stored so far, read without creating or changing it (empty
    before the study exists)."""
    import optuna

    from polymodal.tuning.study import JOURNAL, STUDY_NAME

    if not (out / JOURNAL).exists():
        return []
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / JOURNAL)))
    try:
        return optuna.load_study(study_name=STUDY_NAME, storage=storage).trials
    except KeyError:  # the study is not created yet
        return []
