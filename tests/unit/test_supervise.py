"""The supervisor of `sharpen up` with real child processes (short-lived shells), time passed in explicitly."""
import subprocess
import time

import pytest

from shared.cli.supervise import Child, CrashLoop, Supervisor


def spawner(*argv: str):
    started = []

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(list(argv))
        started.append(proc)
        return proc
    return start, started


def wait_exit(proc: subprocess.Popen) -> None:
    proc.wait(timeout=10)


def test_a_child_that_dies_is_restarted_after_a_growing_delay(tmp_path):
    start, started = spawner("sh", "-c", "exit 3")
    lines = []
    sup = Supervisor([Child("worker-1", start, tmp_path / "worker-1.log")], lines.append, max_crashes=5)
    sup.start_all()
    now = 1000.0
    for n, expected_delay in enumerate([0.5, 1, 2, 4], start=1):
        wait_exit(started[-1])
        sup.poll(now)
        assert lines[-1] == f"worker-1 exited with code 3; restarting it in {expected_delay:g} s " \
                            f"(see {tmp_path / 'worker-1.log'})"
        sup.poll(now + expected_delay - 0.01)
        assert len(started) == n  # not before its delay
        now += expected_delay
        sup.poll(now)
        assert len(started) == n + 1
    wait_exit(started[-1])
    with pytest.raises(CrashLoop, match=r"worker-1 exited with code 3, its 5th exit within 60 s; stopping"):
        sup.poll(now)


def test_exits_spread_over_more_than_the_window_never_stop_the_stack(tmp_path):
    start, started = spawner("sh", "-c", "exit 0")
    lines = []
    sup = Supervisor([Child("scheduler", start, tmp_path / "s.log")], lines.append, max_crashes=3, window=60)
    sup.start_all()
    now = 0.0
    for _ in range(6):  # one exit every 31 s: never three within a minute
        wait_exit(started[-1])
        sup.poll(now)
        now += 31
        sup.poll(now)
    assert len(started) == 7 and all("restarting it in" in line for line in lines)


def test_a_killed_child_is_named_with_its_signal_and_stop_all_ends_every_child(tmp_path):
    sleeper, started = spawner("sleep", "60")
    lines = []
    sup = Supervisor([Child("redis", sleeper, tmp_path / "r.log"), Child("dashboard", sleeper, tmp_path / "d.log")],
                     lines.append)
    sup.start_all()
    started[0].kill()
    wait_exit(started[0])
    sup.poll(time.monotonic())
    assert lines == [f"redis was killed by SIGKILL; restarting it in 0.5 s (see {tmp_path / 'r.log'})"]
    sup.stop_all(timeout=5)
    assert all(p.poll() is not None for p in started)


def test_a_child_that_cannot_be_started_counts_as_a_crash(tmp_path):
    calls = []

    def start():
        calls.append(1)
        if len(calls) > 1:
            raise OSError("no such program")
        return subprocess.Popen(["sh", "-c", "exit 1"])
    lines = []
    sup = Supervisor([Child("trainer", start, tmp_path / "t.log")], lines.append, max_crashes=2)
    sup.start_all()
    wait_exit(sup.children[0].proc)
    sup.poll(0.0)
    with pytest.raises(CrashLoop, match=r"trainer could not be started \(no such program\)"):
        sup.poll(1.0)
