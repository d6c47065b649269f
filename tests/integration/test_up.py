"""`sharpen up` on a fresh directory with no configuration, and `sharpen submit --wait` from a second shell."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .conftest import blurred_and_sharp
from .services import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_up_then_submit_and_wait_from_another_shell(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "STORAGE_ROOT") and not k.startswith("SHARPEN_")}
    env.update(PYTHONPATH=str(ROOT), SHARPEN_PORT=str(free_port()), OMP_NUM_THREADS="1")
    cwd = tmp_path / "fresh"
    cwd.mkdir()
    folder, _ = blurred_and_sharp(tmp_path / "data", 12)
    log = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen([sys.executable, "-m", "shared.cli", "up"], cwd=cwd, env=env, stdout=log,
                          stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        url = f"http://127.0.0.1:{env['SHARPEN_PORT']}/"
        while True:  # the dashboard answers once the stack is up
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            try:
                if urllib.request.urlopen(url, timeout=1).status == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, (tmp_path / "up.log").read_text()
            time.sleep(0.5)
        assert (cwd / "var" / "redis" / "redis.sock").exists()  # the embedded Redis, under ./var
        assert (cwd / "var" / "sharpen.db").exists()
        # a second shell in the same directory finds the stack without flags
        out = subprocess.run([sys.executable, "-m", "shared.cli", "submit", str(folder), "--wait", "--timeout",
                              "180"], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
        assert out.returncode == 0, out.stderr + (tmp_path / "up.log").read_text()
        batch_id = out.stdout.split()[0]
        assert f"batch {batch_id} [restore] done: 12/12 (12 done, 0 failed)" in out.stdout
        assert len(list((cwd / "var" / "batches" / batch_id / "output").iterdir())) == 12
        cli = lambda *args: subprocess.run([sys.executable, "-m", "shared.cli", *args], cwd=cwd, env=env,  # noqa
                                           capture_output=True, text=True, timeout=60, check=True).stdout
        data = json.loads(cli("metrics", batch_id, "--json"))
        assert data["batch"]["done_count"] == 12 and len(data["images"]) == 12
        assert {im["original_name"] for im in data["images"]} == {f"img{i:03d}.png" for i in range(12)}
        assert "12 images written" in cli("results", batch_id, "--out", str(tmp_path / "results"))
        assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [f"img{i:03d}.png" for i in range(12)]
        assert f"batch {batch_id} [restore] done" in cli("batches")
        assert "12 done, 0 failed" in cli("status", batch_id)
        assert f">{batch_id}<" in urllib.request.urlopen(url, timeout=5).read().decode()
    finally:
        os.killpg(up.pid, signal.SIGINT)  # Ctrl-C
        code = up.wait(timeout=60)
    assert code == 0, (tmp_path / "up.log").read_text()
    assert not (cwd / "var" / "redis" / "redis.sock").exists()
    text = (tmp_path / "up.log").read_text()
    assert "Sharpen is up" in text and "stopping" in text


def _children(pid: int) -> set[int]:
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.add(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_up_stops_its_children_when_its_terminal_goes_away(tmp_path):
    """A closed terminal: SIGHUP, and stdout a pipe nobody reads. Nothing may be left running."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "STORAGE_ROOT") and not k.startswith("SHARPEN_")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    up = subprocess.Popen([sys.executable, "-m", "shared.cli", "up", "--no-dashboard", "--no-trainer"],
                          cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          start_new_session=True)
    try:
        assert b"Sharpen is up" in up.stdout.readline()
        deadline = time.time() + 30
        while len(kids := _children(up.pid)) < 3:  # embedded Redis, one worker, the scheduler
            assert time.time() < deadline and up.poll() is None
            time.sleep(0.2)
        up.stdout.close()
        up.send_signal(signal.SIGHUP)
        up.wait(timeout=90)
        deadline = time.time() + 30
        while any(_alive(k) for k in kids):
            assert time.time() < deadline, f"left running: {[k for k in kids if _alive(k)]}"
            time.sleep(0.2)
        assert not (tmp_path / "var" / "redis" / "redis.sock").exists()
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever is left of its process group
            os.killpg(up.pid, signal.SIGKILL)
