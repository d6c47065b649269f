"""Checkpoints: everything needed to resume a run exactly, written atomically."""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

CHECKPOINT_FORMAT = "sharpen-checkpoint/1"
# Config fields a resumed run may change (how long to train, where to run); the rest define the experiment.
RESUMABLE_CHANGES = {"epochs", "checkpoint_every", "workers", "device", "time_budget_min", "stop_after"}


class CheckpointMismatch(ValueError):
    """The checkpoint belongs to a different experiment (architecture or settings differ)."""


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, **state) -> None:
    """Write ``state`` (model, optimizer, scheduler, epoch, step, config, history…) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".checkpoint.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"format": CHECKPOINT_FORMAT, "rng": rng_state(), **state}, tmp)
        os.replace(tmp, path)  # readers see the old checkpoint or the new one, never half of one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(path: Path, config: dict) -> dict:
    """Load a checkpoint and refuse it when it was made for another architecture or experiment."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatch(f"{path} is not a Sharpen training checkpoint")
    saved = ckpt["config"]
    if saved["arch"] != config["arch"]:
        raise CheckpointMismatch(
            f"{path} holds a {saved['arch']!r} network, this run trains {config['arch']!r}; "
            "start a new run directory or train the same architecture")
    differ = sorted(k for k in saved if k not in RESUMABLE_CHANGES and saved.get(k) != config.get(k))
    if differ:
        raise CheckpointMismatch(f"{path} was made with different settings ({', '.join(differ)}); "
                                 "resume with the same settings or start a new run directory")
    return ckpt
