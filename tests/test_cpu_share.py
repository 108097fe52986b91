"""Sharing the cores with other jobs (polymodal.cpu_share): the governor's decisions, driven by a fake sampler and
clock (no busy machine, no timing), and the fit wiring (a chosen thread count is kept)."""

from __future__ import annotations

import os

import pytest

from polymodal import cpu_share, threads


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _governor(samples: list[int | None], ceiling: int = 2, cores: int = 2, window: int = 3):
    clock = FakeClock()
    it = iter(samples)
    set_to: list[int] = []
    gov = cpu_share.ThreadGovernor(
        ceiling, cores, interval_s=1.0, window=window, sampler=lambda: next(it), clock=clock, setter=set_to.append
    )
    return gov, clock, set_to


def _run(gov, clock, steps: int) -> list[int | None]:
    out = []
    for _ in range(steps):
        out.append(gov.poll())
        clock.now += 1.0
    return out


def test_it_gives_a_core_to_a_busy_neighbour_and_takes_it_back_when_it_stops():
    gov, clock, set_to = _governor([1, 1, 1, 1, 0, 0, 0])
    assert _run(gov, clock, 7) == [None, None, 1, None, None, 2, None]
    assert set_to == [1, 2] == gov.changes


def test_a_short_burst_elsewhere_changes_nothing():
    gov, clock, set_to = _governor([0, 3, 0, 0, 2, 0])
    _run(gov, clock, 6)
    assert set_to == []


def test_it_never_goes_below_one_thread_nor_above_the_ceiling():
    gov, clock, set_to = _governor([5, 5, 5, 0, 0, 0], ceiling=3, cores=8)
    _run(gov, clock, 6)
    assert set_to == [3] or set_to == []  # 8 cores - 5 busy = 3 = the ceiling: nothing to change
    gov, clock, set_to = _governor([9, 9, 9], ceiling=4, cores=4)
    _run(gov, clock, 3)
    assert set_to == [1]


def test_it_samples_at_most_once_per_interval():
    calls = []
    clock = FakeClock()
    gov = cpu_share.ThreadGovernor(2, 2, interval_s=1.0, window=1, sampler=lambda: calls.append(1) or 0, clock=clock)
    for _ in range(10):
        gov.poll()  # the clock does not move
    assert len(calls) == 1


def test_without_proc_it_keeps_the_count():
    gov, clock, set_to = _governor([None] * 5)
    _run(gov, clock, 5)
    assert set_to == []


def test_others_running_reads_proc(tmp_path):
    """A fake /proc: 5 runnable on the machine, 2 of them this process's threads, 1 its loader worker's."""
    (tmp_path / "stat").write_text("cpu  1 2 3\nprocs_running 5\nprocs_blocked 0\n")
    me = tmp_path / "self" / "task"
    for tid, state in [(10, "R"), (11, "S"), (12, "R")]:
        (me / str(tid)).mkdir(parents=True)
        (me / str(tid) / "stat").write_text(f"{tid} (pt_main thread) {state} 1 2 3\n")
        (me / str(tid) / "children").write_text("20 " if tid == 10 else "")
    worker = tmp_path / "20" / "task" / "20"
    worker.mkdir(parents=True)
    (worker / "stat").write_text("20 (python) R 1 2\n")
    assert cpu_share.others_running(tmp_path) == 5 - 3
    assert cpu_share.others_running(tmp_path / "absent") is None


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux's /proc")
def test_others_running_on_this_machine_is_a_count():
    n = cpu_share.others_running()
    assert isinstance(n, int) and n >= 0


def test_only_a_detected_thread_count_is_shared(monkeypatch):
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert not threads.user_chose_threads()
    assert threads.user_chose_threads(config=2)
    with threads.command_line(1):
        assert threads.user_chose_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.user_chose_threads()
    monkeypatch.setattr(threads, "_omp_ours", "1")  # the command line put it there, not the user
    assert not threads.user_chose_threads()
    monkeypatch.setenv(threads.ENV_VAR, "2")
    assert threads.user_chose_threads()


def test_the_switch_turns_it_off():
    assert cpu_share.enabled({})
    assert not cpu_share.enabled({cpu_share.ENV_VAR: "0"})
    assert cpu_share.enabled({cpu_share.ENV_VAR: "1"})


def test_a_fit_shares_the_cores_only_when_nobody_chose_the_count(monkeypatch):
    from polymodal.config import TrainingConfig
    from polymodal.training.fit import shares_cores

    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(cpu_share.ENV_VAR, raising=False)
    assert shares_cores(TrainingConfig())
    assert not shares_cores(TrainingConfig(threads=2))
    assert not shares_cores(TrainingConfig(deterministic=True))
    monkeypatch.setenv(cpu_share.ENV_VAR, "0")
    assert not shares_cores(TrainingConfig())
