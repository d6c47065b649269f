"""`sharpen submit/status/metrics/results --server URL --token T` from a directory with no var/ and no database."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import blurred_and_sharp

ROOT = Path(__file__).resolve().parents[2]


def test_submit_over_http_needs_no_database(served, tmp_path):
    blurred, sharp = blurred_and_sharp(tmp_path / "data", 6)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "STORAGE_ROOT") and not k.startswith("SHARPEN_")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")

    def cli(*args, token=served.token, check=True):
        out = subprocess.run([sys.executable, "-m", "shared.cli", *args, "--server", served.url,
                              *(["--token", token] if token else [])], cwd=cwd, env=env, capture_output=True,
                             text=True, timeout=240)
        assert out.returncode == 0 or not check, out.stderr
        return out

    refused = cli("submit", str(blurred), token=None, check=False)
    assert refused.returncode != 0 and "401" in refused.stderr and "API token" in refused.stderr
    out = cli("submit", str(blurred), "--mode", "paired", "--reference", str(sharp), "--name", "remote",
              "--wait", "--timeout", "180")
    batch_id = out.stdout.split()[0]
    assert f"batch {batch_id} [paired] done: 6/6 (6 done, 0 failed)  SSIM" in out.stdout
    assert "6 done, 0 failed" in cli("status", batch_id).stdout  # (CLI start-up dominates: few calls)
    data = json.loads(cli("metrics", batch_id, "--json").stdout)
    assert data["batch"]["done_count"] == 6 and len(data["images"]) == 6
    assert data["batch"]["mean_ssim"] > data["batch"]["mean_input_ssim"]
    assert "6 images written" in cli("results", batch_id, "--out", str(cwd / "out")).stdout
    assert sorted(p.name for p in (cwd / "out").iterdir()) == [f"img{i:03d}.png" for i in range(6)]
    assert sorted(p.name for p in cwd.iterdir()) == ["out"]  # no var/, no database here
