"""Thread control (polymodal.threads): the cores this process may use, the thread count's precedence
(--threads > training.threads > POLYMODAL_THREADS > OMP_NUM_THREADS > detected), clear errors, where the count is
applied, and OpenMP's passive waiting set before torch loads without overriding a user's choice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from polymodal import threads as th
from polymodal.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]


def _cgroup(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),  # cgroup v2 with a quota
        ({"cpu.max": "max 100000\n"}, None),  # v2, no quota
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),  # v1
        ({"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, None),  # v1, none
        ({"cpu.max": "garbage\n"}, None),
        ({}, None),  # no cgroup files at all
    ],
)
def test_cgroup_quota_is_read_from_v2_and_v1_files(tmp_path, files, limit):
    assert th.cgroup_cpu_limit(_cgroup(tmp_path, files)) == limit


def test_available_cores_is_the_affinity_capped_by_the_quota(tmp_path):
    eight = set(range(8))
    assert th.available_cores(eight, _cgroup(tmp_path / "none", {"cpu.max": "max 100000"})) == 8
    assert th.available_cores(eight, _cgroup(tmp_path / "q15", {"cpu.max": "150000 100000"})) == 2  # rounded up
    assert th.available_cores({0, 3}, _cgroup(tmp_path / "q6", {"cpu.max": "600000 100000"})) == 2  # affinity wins
    assert th.available_cores({5}, _cgroup(tmp_path / "tiny", {"cpu.max": "1000 100000"})) == 1
    # this process: at least one core, never more than its affinity
    assert 1 <= th.available_cores() <= len(os.sched_getaffinity(0))


def test_precedence_flag_config_env_openmp_detected():
    env = {th.ENV_VAR: "5", "OMP_NUM_THREADS": "6"}
    assert th.resolve_threads(3, 2, env, detected=7) == 3
    assert th.resolve_threads(None, 2, env, detected=7) == 2
    assert th.resolve_threads(None, None, env, detected=7) == 5
    assert th.resolve_threads(None, None, {"OMP_NUM_THREADS": "6"}, detected=7) == 6
    assert th.resolve_threads(None, None, {"OMP_NUM_THREADS": "4,2"}, detected=7) == 7  # not a plain count: skipped
    assert th.resolve_threads(None, None, {}, detected=7) == 7
    # the command line's --threads wins over a training.threads read deeper down (the trainer reads the config)
    with th.command_line(4):
        assert th.resolve_threads(config=2, environ=env) == 4
    assert th.resolve_threads(config=2, environ=env) == 2


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_environment_value_is_a_config_error_naming_the_variable(value):
    with pytest.raises(ConfigError, match=f"{th.ENV_VAR} must be a whole number of threads"):
        th.resolve_threads(environ={th.ENV_VAR: value})


def test_bad_flag_and_config_values_are_config_errors():
    with pytest.raises(ConfigError, match="--threads"):
        th.resolve_threads(flag=0, environ={})
    with pytest.raises(ConfigError, match="training.threads"):
        th.resolve_threads(config=True, environ={})  # type: ignore[arg-type]
    from polymodal import Predictor

    with pytest.raises(ConfigError, match="threads"):
        Predictor("label", config={"training": {"threads": 0}})


def test_cli_refuses_threads_zero_before_any_work(cli, tmp_path):
    r = cli("predict", tmp_path / "no-run", tmp_path / "no.csv", "--threads", "0")
    assert r.exit_code == 2
    assert "threads" in r.stderr and "greater than or equal to 1" in r.stderr


def test_cli_refuses_a_bad_environment_value(cli, tmp_path, monkeypatch):
    monkeypatch.setenv(th.ENV_VAR, "lots")
    r = cli("predict", tmp_path / "no-run", tmp_path / "no.csv")
    assert r.exit_code == 2
    assert th.ENV_VAR in r.stderr


def test_a_library_fit_keeps_the_callers_lower_torch_count(monkeypatch):
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert th.threads_for_call(None) == 1  # the script's own choice
        assert th.threads_for_call(3) == 3  # training.threads
        torch.set_num_threads(th.available_cores() + 4)
        assert th.threads_for_call(None) == th.available_cores()  # capped by what this process may use
    finally:
        torch.set_num_threads(before)


def test_the_count_applies_to_torch_and_the_decode_pool_for_the_block_only():
    from polymodal.data.dataset import _threads

    before = torch.get_num_threads()
    wanted = before + 1
    with th.for_command(wanted, environ={}) as n:
        assert n == wanted
        assert torch.get_num_threads() == wanted
        assert th.current_threads() == wanted
        assert _threads() == max(2, min(8, 2 * wanted))
    assert torch.get_num_threads() == before
    with th.use_threads(1):
        assert (torch.get_num_threads(), _threads()) == (1, 2)
    assert torch.get_num_threads() == before


def test_onnx_sessions_take_the_count_and_do_not_spin(tmp_path):
    from onnx import TensorProto, helper

    from polymodal.export.onnx_graph import session

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with th.use_threads(1):
        opts = session(model.SerializeToString()).get_session_options()
    assert opts.intra_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def _environ_after(code: str, **env: str) -> dict[str, str | None]:
    base = {k: v for k, v in os.environ.items() if k not in th.OPENMP_QUIET and k != th.PASSIVE_ENV_VAR}
    base.update(env)
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")]))
    names = list(th.OPENMP_QUIET)
    probe = f"{code}\nimport os, json; print(json.dumps({{k: os.environ.get(k) for k in {names!r}}}))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=base, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    import json

    return json.loads(r.stdout.strip().splitlines()[-1])


def test_passive_openmp_waiting_is_opt_in():
    """Off by default (a lone fit was 1.6x slower with it; fits share the cores instead, see cpu_share); on with
    POLYMODAL_OPENMP_PASSIVE=1, for the import and for the command line."""
    nothing = dict.fromkeys(th.OPENMP_QUIET)
    assert _environ_after("import polymodal") == nothing
    assert _environ_after("import polymodal.cli") == nothing
    assert _environ_after("import polymodal", **{th.PASSIVE_ENV_VAR: "1"}) == th.OPENMP_QUIET
    assert _environ_after("import polymodal.cli", **{th.PASSIVE_ENV_VAR: "1"}) == th.OPENMP_QUIET


def test_a_users_wait_policy_is_kept():
    assert _environ_after("import polymodal.cli", OMP_WAIT_POLICY="ACTIVE", **{th.PASSIVE_ENV_VAR: "1"}) == {
        "OMP_WAIT_POLICY": "ACTIVE",
        "GOMP_SPINCOUNT": None,
    }
    assert _environ_after("import polymodal", GOMP_SPINCOUNT="1000", **{th.PASSIVE_ENV_VAR: "1"}) == {
        "OMP_WAIT_POLICY": None,
        "GOMP_SPINCOUNT": "1000",
    }


def test_nothing_is_set_when_torch_was_imported_first():
    """Too late for OpenMP to read it, and importing polymodal must not change the process (test_no_side_effects).
    (torch is imported in this process.)"""
    env: dict[str, str] = {}
    assert th.quiet_openmp(env) == {} and env == {}
    assert th.quiet_openmp(env, force=True) == th.OPENMP_QUIET == env


def test_decoding_in_a_fit_follows_training_threads(tmp_path, monkeypatch):
    """training.threads sizes the decode pool of fit's prepare step as well as the training loop."""
    from conftest import make_table, tiny_config

    from polymodal import Predictor
    from polymodal.data import dataset

    seen: list[int] = []
    real = dataset.prepare

    def spy(*args, **kwargs):
        seen.append(dataset._threads())
        return real(*args, **kwargs)

    monkeypatch.setattr("polymodal.fitting.prepare", spy)
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    table = make_table(tmp_path, 40)
    wanted = th.available_cores() + 2  # a count no default gives
    Predictor("label", config=tiny_config(max_epochs=1, threads=wanted), preset="fast", verbose=False).fit(table)
    assert seen == [max(2, min(8, 2 * wanted))] * 2  # the training and the validation rows
