"""Importing polymodal, or calling one of its functions, leaves the process as it was: the matplotlib backend, other
libraries' logger levels, torch's thread count and global flags, the warning filters, the environment and torch's
classes. (The CLI may configure its own 'polymodal' logger; the server owns torch's threads only while it runs.)

The import check runs in a fresh interpreter: in this one, polymodal was imported long ago by conftest.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

# Runs in a child interpreter. Third-party libraries are imported first, so their own import-time settings are part
# of the baseline; then non-default values are set everywhere a library might write, so that a change shows.
_PROBE = textwrap.dedent("""
    import importlib, inspect, json, logging, os, pkgutil, sys, warnings
    import matplotlib
    matplotlib.use("svg")  # not Agg: a library call that switches to Agg shows
    import matplotlib.pyplot
    import torch, torch.nn as nn, lightning, transformers, fastapi, onnx, onnxruntime, sklearn

    LOGGERS = ["", "lightning", "lightning.pytorch", "lightning.fabric", "transformers", "torch", "matplotlib",
               "uvicorn", "PIL"]
    for name, level in zip(LOGGERS, [logging.INFO, logging.DEBUG, logging.INFO, logging.DEBUG, logging.DEBUG,
                                     logging.INFO, logging.DEBUG, logging.INFO, logging.DEBUG]):
        logging.getLogger(name).setLevel(level)
    torch.set_num_threads(3)

    def state():
        return {
            "backend": matplotlib.get_backend(),
            "rc_backend": str(matplotlib.rcParams._get_backend_or_none()),
            "loggers": {n: logging.getLogger(n).level for n in LOGGERS},
            "root_handlers": len(logging.getLogger().handlers),
            "threads": torch.get_num_threads(),
            "dtype": str(torch.get_default_dtype()),
            "matmul": torch.get_float32_matmul_precision(),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "cudnn": [torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic],
            "grad": torch.is_grad_enabled(),
            "warnings": [repr(f) for f in warnings.filters],
            "environ": dict(os.environ),
            # getattr_static: the stored function itself (plain getattr makes a new bound wrapper each time).
            "classes": {f"{c.__qualname__}.{a}": id(inspect.getattr_static(c, a)) for c in
                        (nn.Module, nn.MultiheadAttention, nn.Linear, nn.TransformerEncoderLayer, torch.Tensor)
                        for a in ("forward", "__call__", "__repr__", "__init__") if hasattr(c, a)},
        }

    before = state()
    import polymodal
    names = [m.name for m in pkgutil.walk_packages(polymodal.__path__, "polymodal.")]
    for name in names:
        importlib.import_module(name)
    after_import = state()
    """)


def _run_probe(extra: str) -> dict:
    code = (
        _PROBE + textwrap.dedent(extra) + '\nprint("STATE" + json.dumps({"before": before, "after_import": '
        'after_import, "after_calls": state(), "modules": len(names)}))\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), env.get("PYTHONPATH")]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("STATE"))
    return json.loads(line[len("STATE") :])


def _diff(a: dict, b: dict) -> dict:
    return {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)}


# A tiny comparison summary, an importance result, an explanation with each panel kind and a report figure.
_CALLS = """
    import tempfile
    from pathlib import Path
    import numpy as np, pandas as pd
    from polymodal.evaluation.compare import write_outputs
    from polymodal.explain import figure_png, plot_explanation, plot_importance
    from polymodal.explain.attributions import Explanation, ModalityAttribution
    from polymodal.explain.importance import ImportanceResult, ImportanceRow
    from polymodal.reporting import plots as report_plots

    summary = pd.DataFrame({"variant": ["image", "concat"], "kind": ["modality", "fusion"],
                            "accuracy_mean": [0.6, 0.8], "accuracy_std": [0.01, 0.02], "parameters": [10, 20],
                            "fit_seconds": [1.0, 2.0], "infer_ms_per_row": [0.1, 0.2], "seeds": [2, 2]})
    with tempfile.TemporaryDirectory() as tmp:
        write_outputs(summary, Path(tmp), seeds=2)
        assert (Path(tmp) / "compare.png").read_bytes()[:4] == b"\\x89PNG"
    imp = ImportanceResult("accuracy", 0.9, [ImportanceRow("image", m, 0.2, 0.1, 0.3, "image")
                                             for m in ("drop", "permutation")], n_rows=10, n_bootstrap=20)
    png = figure_png(plot_importance(imp))
    attrs = {
        "image": ModalityAttribution("image", "image", 0.5, np.random.rand(8, 8), np.random.rand(8, 8, 3)),
        "audio": ModalityAttribution("audio", "audio", 0.2, np.random.rand(4, 6), np.random.rand(4, 6)),
        "text": ModalityAttribution("text", "text", 0.2, np.array([0.1, -0.3]), tokens=["a", "[b]"]),
        "x": ModalityAttribution("x", "numeric", 0.1, np.array(0.2), total=0.2, value=1.5),
    }
    png += figure_png(plot_explanation(Explanation(0, "yes", 0.8, "yes", attrs, {"image": 0.7, "text": 0.3})))
    history = pd.DataFrame({"epoch": [0, 1], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.6],
                            "val_accuracy": [0.5, 0.7]})
    png += report_plots.to_png(report_plots.training_curves(history, "accuracy", "max", 1))
    assert png.count(b"\\x89PNG") == 3
"""


def test_importing_and_plotting_leave_global_state_alone():
    s = _run_probe(_CALLS)
    assert s["modules"] > 50  # every module of the package was imported
    assert s["before"]["backend"] == "svg"
    assert _diff(s["before"], s["after_import"]) == {}, "importing polymodal changed global state"
    assert _diff(s["before"], s["after_calls"]) == {}, "a plotting call changed global state"


def test_quiet_lightning_restores_the_levels():
    from polymodal.training.fit import quiet_lightning

    names = ("lightning", "lightning.pytorch", "lightning.fabric")
    before = {n: logging.getLogger(n).level for n in names}
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)  # an application's own choice is kept
    try:
        with quiet_lightning():
            assert logging.getLogger("lightning.pytorch").getEffectiveLevel() == logging.WARNING
            assert logging.getLogger("lightning.fabric").getEffectiveLevel() == logging.ERROR
        assert logging.getLogger("lightning.fabric").level == logging.ERROR
        assert {n: logging.getLogger(n).level for n in names if n != "lightning.fabric"} == {
            n: v for n, v in before.items() if n != "lightning.fabric"
        }
    finally:
        logging.getLogger("lightning.fabric").setLevel(before["lightning.fabric"])


def _threads_of_a_new_thread() -> int:
    """torch's process-wide thread count: the value a thread that has not run torch yet starts with (a thread that
    has keeps its own OpenMP setting, so the calling thread's torch.get_num_threads() alone would not show it)."""
    import threading

    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    return seen[0]


def test_server_owns_torch_threads_only_while_it_runs(fitted):
    from fastapi.testclient import TestClient

    from polymodal.serving.app import create_app
    from polymodal.serving.schemas import ServeConfig

    here, process = torch.get_num_threads(), _threads_of_a_new_thread()
    wanted = process + 1
    app = create_app(fitted, ServeConfig(threads=wanted, max_wait_ms=1))
    assert (torch.get_num_threads(), _threads_of_a_new_thread()) == (here, process)  # building the app: no change
    with TestClient(app) as client:  # the app runs: its model threads get the configured count
        assert _threads_of_a_new_thread() == wanted
        assert client.get("/health").status_code == 200
    assert (torch.get_num_threads(), _threads_of_a_new_thread()) == (here, process)


def test_plots_are_not_pyplot_figures(tmp_path):
    """Figures are drawn without pyplot: none is left registered with it (a leak in long-running processes)."""
    import matplotlib.pyplot as plt

    from polymodal.evaluation.compare import write_outputs

    open_before = plt.get_fignums()
    summary = pd.DataFrame(
        {
            "variant": ["a", "b"],
            "kind": ["modality", "fusion"],
            "accuracy_mean": [0.5, 0.7],
            "accuracy_std": [0.0, 0.1],
            "parameters": [1, 2],
            "fit_seconds": [1.0, 1.0],
            "infer_ms_per_row": [0.1, 0.1],
            "seeds": [1, 1],
        }
    )
    write_outputs(summary, tmp_path, seeds=1)
    assert (tmp_path / "compare.png").stat().st_size > 1000
    assert plt.get_fignums() == open_before
    assert np.isfinite(pd.read_csv(tmp_path / "compare.csv")["accuracy_mean"]).all()
