"""Run directories under concurrent replacement, tampering, killed saves and torn logs (issue 19)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from polymodal import Predictor
from polymodal.errors import RunDirError
from polymodal.evaluation.compare import _append_run, _finished_runs
from polymodal.pipeline import FittedPipeline
from polymodal.rundir import MANIFEST, check_run_dir, read_weights, write_manifest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _tiny(hidden: int, seed: int) -> FittedPipeline:
    """A tabular-only classifier trained for one epoch on 40 rows (a fraction of a second)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40), "label": rng.choice(["x", "y"], 40)})
    config = {
        "training": {"max_epochs": 1, "batch_size": 16},
        "encoders": {"tabular": {"name": "tabular_mlp", "hidden": hidden, "dim": 8}},
        "fusion": {"dim": 8},
    }
    p = Predictor("label", config=config, verbose=False, seed=seed, preset="fast").fit(frame)
    assert p.pipeline is not None
    return p.pipeline


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two different tiny runs (other weights and other shapes) saved side by side."""
    root = tmp_path_factory.mktemp("two")
    _tiny(8, 0).save(root / "a")
    _tiny(12, 1).save(root / "b")
    return root / "a", root / "b"


def _fingerprint(p: FittedPipeline) -> tuple:
    state = p.model.state_dict()
    return (
        p.config.to_yaml(),
        tuple((k, tuple(v.shape), float(v.double().sum())) for k, v in sorted(state.items())),
        json.dumps({m: proc.state() for m, proc in p.processors.items()}, sort_keys=True, default=str),
    )


# ------------------------------------------------------------------------------------- acceptance 5 (bug 8)
_WRITER = """
import sys, torch
torch.set_num_threads(1)
from pathlib import Path
from polymodal.pipeline import FittedPipeline
a, b, run, n = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
copies = [FittedPipeline.load(a, verbose=False), FittedPipeline.load(b, verbose=False)]
print("ready", flush=True)
for i in range(n):
    copies[i % 2].save(run, overwrite=True)
"""


def _race(two_runs, tmp_path, swaps: int, in_process: bool) -> tuple[int, set[int]]:
    """Overwrite a run ``swaps`` times with the two runs in turn, by the real save path, while this thread loads it
    in a loop; every load must be exactly one of the two. The writer is another process, or (cheaper to start,
    for the normal suite) another thread: file operations release the GIL, so reads and swaps still interleave."""
    a, b = two_runs
    expected = [
        _fingerprint(FittedPipeline.load(a, verbose=False)),
        _fingerprint(FittedPipeline.load(b, verbose=False)),
    ]
    assert expected[0] != expected[1]
    run = tmp_path / "run"
    FittedPipeline.load(b, verbose=False).save(run)
    if in_process:
        copies = [FittedPipeline.load(a, verbose=False), FittedPipeline.load(b, verbose=False)]
        failed: list[BaseException] = []

        def write() -> None:
            try:
                for i in range(swaps):
                    copies[i % 2].save(run, overwrite=True)
            except BaseException as e:  # reported by the test below
                failed.append(e)

        thread = threading.Thread(target=write)
        thread.start()
        running = thread.is_alive
    else:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "OMP_NUM_THREADS": "1"}
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(a), str(b), str(run), str(swaps)], env=env, stdout=subprocess.PIPE
        )
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == b"ready"

        def running() -> bool:
            return writer.poll() is None

    loads, seen = 0, set()
    while running():
        p = FittedPipeline.load(run, verbose=False)  # raises on a mixed or damaged read: the test fails
        got = _fingerprint(p)
        assert got in expected, "a load combined files from two saves"
        seen.add(expected.index(got))
        loads += 1
    if in_process:
        thread.join()
        assert not failed, failed
    else:
        assert writer.wait() == 0
    assert _fingerprint(FittedPipeline.load(run, verbose=False)) == expected[(swaps - 1) % 2]
    assert [p.name for p in tmp_path.iterdir()] == ["run"], "a save left a temp folder behind"
    return loads, seen


def test_reader_never_sees_a_mixed_run_while_a_writer_overwrites_it(two_runs, tmp_path):
    loads, _seen = _race(two_runs, tmp_path, 200, in_process=True)
    assert loads > 0


@pytest.mark.slow
def test_reader_never_sees_a_mixed_run_while_another_process_overwrites_it_1000_times(two_runs, tmp_path):
    loads, seen = _race(two_runs, tmp_path, 1000, in_process=False)
    assert loads > 10 and seen == {0, 1}


# ------------------------------------------------------------------------------------- --overwrite
def test_overwrite_refuses_a_folder_that_is_not_a_run(two_runs, tmp_path):
    p = FittedPipeline.load(two_runs[0], verbose=False)
    target = tmp_path / "thesis"
    target.mkdir()
    (target / "thesis.txt").write_text("years of work")
    with pytest.raises(RunDirError, match=r"not a polymodal run directory \(it holds thesis.txt\)"):
        p.save(target, overwrite=True)
    assert (target / "thesis.txt").read_text() == "years of work"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    with pytest.raises(RunDirError, match="is a file"):
        p.save(a_file, overwrite=True)
    assert a_file.read_text() == "x"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (p.save(empty, overwrite=True) / MANIFEST).is_file()
    p.save(empty, overwrite=True)  # a run is replaced
    check_run_dir(empty)


def test_cli_fit_overwrite_refuses_a_non_run_folder_before_training(cli, tmp_path, train_csv):
    target = tmp_path / "thesis"
    target.mkdir()
    (target / "thesis.txt").write_text("years of work")
    r = cli("fit", train_csv, "--label", "label", "--out", target, "--overwrite", "--quiet")
    assert r.exit_code == 2
    assert "not a polymodal run directory" in r.stderr and "thesis.txt" in r.stderr
    assert (target / "thesis.txt").read_text() == "years of work"


def test_an_export_of_an_export_is_verified_and_gets_its_own_manifest(two_runs, tmp_path):
    from polymodal.export.export import export_run

    first = export_run(two_runs[0], tmp_path / "e1").out
    second = export_run(first, tmp_path / "e2").out
    listed = json.loads((second / MANIFEST).read_text())["files"]
    assert "model.onnx" in listed and "export.json" in listed
    FittedPipeline.load(second, verbose=False)


# ------------------------------------------------------------------------------------- damaged runs
def _rewrite_weights(run: Path, change) -> None:
    state = read_weights(run / "model.safetensors")
    save_file(change(state), str(run / "model.safetensors"))


def _nan(state):
    k = next(k for k, v in state.items() if v.is_floating_point())
    state[k] = state[k].clone()
    state[k].view(-1)[0] = float("nan")
    return state


def _inf(state):
    k = next(k for k, v in state.items() if v.is_floating_point())
    state[k] = state[k].clone()
    state[k].view(-1)[0] = float("inf")
    return state


def _reshape(state):
    k = next(k for k, v in state.items() if v.ndim == 2)
    state[k] = torch.zeros(state[k].shape[0] + 1, state[k].shape[1])
    return state


def _drop_key(name: str, key: str):
    def change(run: Path) -> None:
        obj = json.loads((run / name).read_text())
        del obj[key]
        (run / name).write_text(json.dumps(obj))

    return change


DAMAGE = {
    "garbage safetensors": (lambda r: (r / "model.safetensors").write_bytes(os.urandom(300)), "model.safetensors"),
    "empty safetensors": (lambda r: (r / "model.safetensors").write_bytes(b""), "model.safetensors"),
    "changed shapes": (lambda r: _rewrite_weights(r, _reshape), "model.safetensors"),
    "NaN weights": (lambda r: _rewrite_weights(r, _nan), "model.safetensors"),
    "inf weights": (lambda r: _rewrite_weights(r, _inf), "model.safetensors"),
    "truncated JSON": (
        lambda r: (r / "processors.json").write_text((r / "processors.json").read_text()[:40]),
        "processors.json",
    ),
    "truncated config": (lambda r: (r / "config.yaml").write_text("fusion: [\n"), "config.yaml"),
    "missing key in task.json": (lambda r: (r / "task.json").write_text("{}"), "task.json"),
    "missing key in polymodal.json": (_drop_key("polymodal.json", "problem_type"), "polymodal.json"),
    "missing processor state": (lambda r: (r / "processors.json").write_text("{}"), "processors.json"),
    "missing file": (lambda r: (r / "task.json").unlink(), "task.json"),
    "missing optional file": (lambda r: (r / "metrics.json").unlink(), "metrics.json"),
    "binary config": (lambda r: (r / "config.yaml").write_bytes(b"\xff\xfe\x00"), "config.yaml"),
}


@pytest.mark.parametrize("manifest", ["checked by the manifest", "manifest rewritten", "no manifest"])
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_run_is_refused_with_our_error_naming_the_file(two_runs, tmp_path, damage, manifest):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(two_runs[0], run)
    change, name = DAMAGE[damage]
    change(run)
    if manifest == "manifest rewritten":  # tampered consistently: the content checks must still catch it
        write_manifest(run)
    elif manifest == "no manifest":  # a run saved before manifests: no hashes, the same content checks
        (run / MANIFEST).unlink()
    if manifest != "checked by the manifest" and damage == "missing optional file":
        FittedPipeline.load(run, verbose=False)  # an absent metrics.json is a valid (older) run
        return
    with pytest.raises(RunDirError) as e:
        FittedPipeline.load(run, verbose=False)
    assert name in str(e.value)


@pytest.mark.parametrize(
    "manifest",
    [
        '{"files": ',
        '{"format": 1, "files": []}',
        '{"format": 1, "files": {"../secret": {"size": 1, "sha256": "00"}}}',
        '{"format": 1, "files": {"task.json": {"size": "big", "sha256": "00"}}}',
    ],
)
def test_a_tampered_manifest_is_refused(two_runs, tmp_path, manifest):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(two_runs[0], run)
    (run / MANIFEST).write_text(manifest)
    with pytest.raises(RunDirError, match="manifest.json is not a valid manifest"):
        FittedPipeline.load(run, verbose=False)


def test_export_overwrite_refuses_a_folder_that_is_not_a_run(two_runs, tmp_path):
    from polymodal.export.export import export_run

    target = tmp_path / "thesis"
    target.mkdir()
    (target / "thesis.txt").write_text("years of work")
    with pytest.raises(RunDirError, match="not a polymodal run directory"):
        export_run(two_runs[0], target, overwrite=True)
    assert (target / "thesis.txt").read_text() == "years of work"


def test_cli_refuses_a_damaged_run_with_exit_2(cli, two_runs, tmp_path, test_csv):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(two_runs[0], run)
    (run / "model.safetensors").write_bytes(b"\0" * 64)
    pd.DataFrame({"a": [0.1], "b": [0.2]}).to_csv(tmp_path / "rows.csv", index=False)
    r = cli("predict", run, tmp_path / "rows.csv")
    assert r.exit_code == 2
    assert "model.safetensors" in r.stderr and "save the model again" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_run_saved_without_a_manifest_still_loads(two_runs, tmp_path):
    import shutil

    run = tmp_path / "old"
    shutil.copytree(two_runs[0], run)
    (run / MANIFEST).unlink()
    assert _fingerprint(FittedPipeline.load(run, verbose=False)) == _fingerprint(
        FittedPipeline.load(two_runs[0], verbose=False)
    )
    FittedPipeline.load(run, verbose=False).save(run, overwrite=True)  # an old run counts as a run: replaced
    assert (run / MANIFEST).is_file()


# ------------------------------------------------------------------------------------- killed saves
def test_temp_folders_left_by_a_killed_save_are_cleaned_up_and_never_taken_for_runs(two_runs, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = tmp_path / "run"
    stale = tmp_path / f".run.polymodal-{dead.pid}-abcd1234.tmp"  # what `kill -9` during a save leaves
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    live = tmp_path / f".run.polymodal-{os.getppid()}-efgh5678.tmp"  # a save still running in another process
    live.mkdir()
    old_unmarked = tmp_path / ".run.ijkl9012.old"  # an earlier polymodal's name, a day old
    old_unmarked.mkdir()
    os.utime(old_unmarked, (time.time() - 2 * 86400,) * 2)
    other = tmp_path / ".other.polymodal-1-mnop3456.tmp"  # another target's: not ours to touch
    other.mkdir()
    mine = tmp_path / "notes.tmp"
    mine.mkdir()
    with pytest.raises(RunDirError, match="temp folder left by an interrupted save"):
        FittedPipeline.load(stale, verbose=False)
    FittedPipeline.load(two_runs[0], verbose=False).save(run)
    assert not stale.exists() and not old_unmarked.exists()
    assert live.exists() and other.exists() and mine.exists()


def test_a_save_that_fails_leaves_no_temp_folder(two_runs, tmp_path, monkeypatch):
    p = FittedPipeline.load(two_runs[0], verbose=False)
    run = p.save(tmp_path / "run")
    before = _fingerprint(FittedPipeline.load(run, verbose=False))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("polymodal.pipeline.write_history", boom)
    with pytest.raises(OSError, match="disk full"):
        p.save(run, overwrite=True)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["run"]
    assert _fingerprint(FittedPipeline.load(run, verbose=False)) == before


# ------------------------------------------------------------------------------------- runs.jsonl
def test_a_torn_runs_jsonl_line_does_not_swallow_the_next_record(tmp_path, caplog):
    log_file = tmp_path / "runs.jsonl"
    _append_run(log_file, {"variant": "a", "seed": 0, "accuracy": 0.5, "settings": "s"})
    with open(log_file, "a", encoding="utf-8") as f:  # a writer killed mid-line
        f.write('{"variant": "b", "seed": 0, "accur')
    _append_run(log_file, {"variant": "c", "seed": 0, "accuracy": 0.7, "settings": "s"})
    with caplog.at_level(logging.WARNING, logger="polymodal"):
        done = _finished_runs(log_file, "s")
    assert sorted(done) == [("a", 0), ("c", 0)]
    assert done[("c", 0)]["accuracy"] == 0.7
    assert "line 2: an incomplete record" in caplog.text
    assert log_file.read_text().count("\n") == 3
