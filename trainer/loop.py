"""The training loop: one function, ``train``, used by the CLI and by the Celery trainer task."""
from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from shared import nets
from shared.allocator import keep_freed_memory
from shared.inference import LoadedModel, choose_device, file_sha256, load_model, save_model, sharpen_tensor
from shared.metrics import psnr_torch, ssim_torch

from .checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from .config import TrainConfig, check_config, loss_margin
from .data import CropDataset, hint_size, split_sources, validation_set
from .losses import DistillationLoss
from .prune import prunable, prune_into

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
PROVENANCE = "provenance.json"
PRUNE_CROPS = 48        # training crops whose activations choose the channels a narrower student keeps


class TrainingCancelled(Exception):
    """``should_stop`` said stop: the run ended at a step boundary; its last checkpoint is left as it was."""

    def __init__(self, epoch: int, step: int):
        super().__init__(f"stopped in epoch {epoch + 1} after step {step}")
        self.epoch, self.step = epoch, step


@dataclass
class TrainResult:
    model_path: Path
    epochs: int
    history: list[dict]
    resumed_from: int       # epoch the run resumed after (0 = fresh start)

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


@torch.no_grad()
def evaluate(net: torch.nn.Module, arch: str, pairs, device: torch.device, meta: dict | None = None) -> dict:
    """Validation SSIM/PSNR of ``net`` on fixed (name, label, degraded, sharp) pairs; 8-bit output as when
    saved. Returns overall means plus ``ssim@label`` / ``psnr@label`` per degradation (label "2" is Gaussian
    σ = 2) and the degraded input's scores for reference. Scores are computed on ``device``. ``meta``: the
    model file's (its guard is applied as in serving); none while training.
    """
    was_training = net.training
    net.eval()
    model = LoadedModel(net=net, arch=arch, meta=meta or {}, sha256="", path=Path(), device=device)
    rows, labels = [], []
    for _name, label, blurred, sharp in pairs:
        x = torch.from_numpy(blurred).permute(2, 0, 1)[None].to(device)
        y = torch.from_numpy(sharp).permute(2, 0, 1)[None].to(device)
        out = torch.round(sharpen_tensor(model, x) * 255) / 255
        rows.append(torch.stack([ssim_torch(out, y)[0], psnr_torch(out, y)[0], ssim_torch(x, y)[0],
                                 psnr_torch(x, y)[0]]))
        labels.append(label)
    net.train(was_training)
    arr = torch.stack(rows).double().cpu().numpy()
    result = {"val_ssim": float(arr[:, 0].mean()), "val_psnr": float(arr[:, 1].mean()),
              "input_ssim": float(arr[:, 2].mean()), "input_psnr": float(arr[:, 3].mean())}
    for label in dict.fromkeys(labels):
        sel = arr[[lab == label for lab in labels]]
        result[f"ssim@{label}"] = float(sel[:, 0].mean())
        result[f"psnr@{label}"] = float(sel[:, 1].mean())
    return result


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up, then cosine from ``lr`` to ``lr_min`` over the run (which may be lengthened later)."""
    warm = min(1.0, 0.01 + step / max(1, cfg.warmup_steps)) if cfg.warmup_steps else 1.0
    total = max(1, cfg.epochs * steps_per_epoch)
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, step / total)))
    return warm * (cfg.lr_min + (cfg.lr - cfg.lr_min) * cos) / cfg.lr


def _loader(ds: CropDataset, cfg: TrainConfig, epoch: int) -> DataLoader:
    ds.epoch = epoch
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)  # same order on resume
    # Workers are forked each epoch. torch runs them on one thread; cv2's thread pool is left alone there:
    # resizing it (cv2.setNumThreads) in a child forked from a parent that used it deadlocks.
    return DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, generator=gen, drop_last=len(ds) > cfg.batch_size,
                      num_workers=cfg.workers, persistent_workers=False, pin_memory=torch.cuda.is_available())


def train(cfg: TrainConfig, run_dir: Path | str, *, resume: bool = False,
          on_epoch: Callable[[int, dict], None] | None = None, progress: bool = True,
          should_stop: Callable[[], bool] | None = None,
          on_checkpoint: Callable[[int, Path], None] | None = None) -> TrainResult:
    """Train ``cfg.arch`` into ``run_dir``; returns the final model file.

    ``run_dir`` gets ``checkpoint.pt`` (every ``checkpoint_every`` epochs and at the end), ``model.pt``,
    ``metrics.jsonl`` (one line per epoch), ``split.json``. With ``resume`` a run continues from its
    checkpoint exactly as if it had not stopped. ``on_epoch(epoch, metrics)`` is called after each epoch,
    ``on_checkpoint(epoch, path)`` after each checkpoint is written. ``should_stop()`` is asked after every
    optimizer step (keep it cheap); when it answers True, ``TrainingCancelled`` is raised there, and the
    checkpoint on disk stays the last one written at an epoch boundary (so a resume stays exact).
    """
    keep_freed_memory()   # every step's buffers reused, not mapped afresh
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = choose_device(cfg.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed crop sizes: let cuDNN pick its kernels
    cfg.teacher_init = nets.resolve_init(cfg.teacher_init) if cfg.arch in nets.TEACHERS else cfg.teacher_init
    cfg.feature_init = nets.resolve_init(cfg.feature_init) if cfg.w_feature_kd > 0 else cfg.feature_init
    torch.manual_seed(cfg.seed)
    record_provenance(run_dir, cfg, resume)
    train_files, val_files = split_sources(cfg)
    (run_dir / "split.json").write_text(json.dumps(
        {"train": [str(p) for p in train_files], "val": [str(p) for p in val_files]}, indent=1))

    net = nets.build(cfg.arch, teacher_init=cfg.teacher_init).to(device).to(memory_format=torch.channels_last)
    dataset = CropDataset(train_files, cfg)
    ckpt_path = run_dir / CHECKPOINT
    resuming = resume and ckpt_path.exists()
    if cfg.init_from and not resuming:   # a resume loads its checkpoint instead
        _load_start(net, cfg, dataset)
    teacher = None
    if cfg.teacher:
        teacher = load_model(cfg.teacher, device).net.requires_grad_(False).eval()
    loss_fn = DistillationLoss(cfg).to(device)
    val_pairs = validation_set(val_files, cfg)
    steps_per_epoch = len(_loader(dataset, cfg, 0))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(cfg, step, steps_per_epoch))
    history: list[dict] = []
    start_epoch = step = 0
    if resuming:
        ckpt = load_checkpoint(ckpt_path, cfg.to_dict())
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        start_epoch, step, history = ckpt["epoch"], ckpt["step"], ckpt["history"]
        if cfg.time_budget_min:
            cfg.epochs = ckpt["config"]["epochs"]  # the budget was turned into an epoch count on the first run
        print(f"resuming {run_dir} after epoch {start_epoch} (step {step})", flush=True)
    metrics_log = run_dir / "metrics.jsonl"
    metrics_log.write_text("".join(json.dumps(h) + "\n" for h in history))

    use_amp = cfg.amp and device.type == "cuda"
    margin = loss_margin(check_config(cfg))
    started = time.time()
    epoch = start_epoch
    while epoch < cfg.epochs:  # not range(): a time budget may fix cfg.epochs after the first epoch
        net.train()
        t0 = time.time()
        sums: dict[str, float] = {}
        bar = tqdm(_loader(dataset, cfg, epoch), desc=f"{cfg.arch} epoch {epoch + 1}/{cfg.epochs}",
                   disable=not progress, leave=False)
        for blurred, sharp, _sigma, hint in bar:
            blurred = blurred.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            sharp = sharp.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                teacher_out = None
                if teacher is not None:
                    with torch.no_grad():
                        teacher_out = _run(teacher, blurred, hint, device).float().clamp(0, 1)
                pred = _run(net, blurred, hint, device)
                floor = _floor(net, blurred, hint, device) if cfg.w_no_harm > 0 else None
                if margin:
                    pred, sharp, blurred = (t[..., margin:-margin, margin:-margin] for t in (pred, sharp, blurred))
                    teacher_out = None if teacher_out is None else teacher_out[..., margin:-margin, margin:-margin]
                    floor = None if floor is None else floor[..., margin:-margin, margin:-margin]
                loss, terms = loss_fn(pred.float(), sharp, teacher_out, blurred.float(),
                                      None if floor is None else floor.float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if should_stop is not None and should_stop():
                raise TrainingCancelled(epoch, step)
            for k, v in terms.items():  # tensors: no device sync per step
                sums[k] = sums.get(k, 0.0) + v
            if step % 25 == 0:
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        n = max(1, steps_per_epoch)
        sums = {k: float(v) for k, v in sums.items()}
        if not all(map(math.isfinite, sums.values())):
            raise FloatingPointError(f"loss became {sums} in epoch {epoch + 1}; lower --lr or check the data")
        record = {"epoch": epoch + 1, "step": step, "lr": sched.get_last_lr()[0],
                  "loss": sum(sums.values()) / n, **{f"loss_{k}": v / n for k, v in sums.items()},
                  **evaluate(net, cfg.arch, val_pairs, device), "seconds": time.time() - t0}
        history.append(record)
        if cfg.time_budget_min and epoch + 1 == min(2, cfg.epochs):  # also when resumed after epoch 1
            # fit the run into the budget from the pace of the first epochs (the schedule follows cfg.epochs)
            left = cfg.time_budget_min * 60 - (time.time() - started)
            cfg.epochs = epoch + 1 + max(0, int(left // record["seconds"]))
            print(f"time budget {cfg.time_budget_min:g} min: training {cfg.epochs} epochs", flush=True)
        with metrics_log.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if progress:
            print(f"epoch {epoch + 1}/{cfg.epochs} loss {record['loss']:.4f} val SSIM {record['val_ssim']:.4f} "
                  f"(input {record['input_ssim']:.4f}) PSNR {record['val_psnr']:.2f} dB", flush=True)
        if on_epoch:  # before the checkpoint: a crash in between repeats the epoch, so callers upsert
            on_epoch(epoch + 1, record)
        pause = cfg.stop_after > 0 and epoch + 1 >= cfg.stop_after and epoch + 1 < cfg.epochs
        if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs or pause:
            save_checkpoint(ckpt_path, model=net.state_dict(), optimizer=opt.state_dict(),
                            scheduler=sched.state_dict(), epoch=epoch + 1, step=step,
                            config=cfg.to_dict(), history=history)
            if on_checkpoint:
                on_checkpoint(epoch + 1, ckpt_path)
        epoch += 1
        if pause:
            break   # --stop-after: checkpointed, to be resumed (e.g. with another --epochs)

    model_path = run_dir / MODEL
    save_model(model_path, net, cfg.arch, _model_meta(cfg.to_dict(), history, step, run_dir))
    return TrainResult(model_path=model_path, epochs=len(history), history=history, resumed_from=start_epoch)


def _run(net: torch.nn.Module, x: torch.Tensor, hint: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Forward ``x``, telling a hinted network the first ``hint_size`` numbers of each crop's hint."""
    if not getattr(net, "uses_hint", False):
        return net(x)
    return net(x, hint[:, : net.hint_size].to(device, non_blocking=True))


@torch.no_grad()
def _floor(net: torch.nn.Module, x: torch.Tensor, hint: torch.Tensor, device: torch.device) -> torch.Tensor:
    """What the network starts from: its Wiener front end's output (``x`` itself for the others)."""
    front = getattr(net, "front", None)
    if front is None:
        return x
    h = hint.to(device, non_blocking=True)
    blur = net.front_blur(h) if hasattr(net, "front_blur") else h[:, 0]
    return front(x, blur, h[:, 1], h[:, 2])


def _load_start(net: torch.nn.Module, cfg: TrainConfig, dataset: CropDataset) -> None:
    """Start from ``cfg.init_from``: the same architecture, the unhinted student a hinted one extends (its
    hint weights start at zero, so the run starts from exactly that model; likewise the weights of the extra
    numbers of a student told more, such as the blur's shape), the Wiener student a bank
    student extends (the last convolution, zero in the bank student, keeps its own shape), or a wider
    student this one is a narrower copy of (``trainer.prune``, on the first ``PRUNE_CROPS`` training crops)."""
    start = load_model(cfg.init_from, "cpu")
    if isinstance(net, nets.FourConvStudent) and isinstance(start.net, nets.FourConvStudent) \
            and prunable(net, start.net):
        sample = [dataset[i] for i in range(min(len(dataset), PRUNE_CROPS))]
        kept = prune_into(net, start.net, torch.stack([s[0] for s in sample]), torch.stack([s[3] for s in sample]))
        print(f"--init-from {cfg.init_from}: kept channels {kept}", flush=True)
        return
    state = start.net.state_dict()
    own = net.state_dict()
    is_bank = lambda n: bool(getattr(getattr(n, "spec", None), "bank", False))  # noqa: E731
    extends_bank = is_bank(net) and not is_bank(start.net)
    last = {k for k in own if k.startswith("body.6.")} if extends_bank else set()
    for k, w in own.items():   # a student told more hint numbers keeps the start's weights for the first ones
        if k.startswith("hint.") and k in state and state[k].shape[1] < w.shape[1]:
            state[k] = torch.cat([state[k], w.new_zeros(w.shape[0], w.shape[1] - state[k].shape[1])], dim=1)
    missing, unexpected = net.load_state_dict({k: v for k, v in state.items() if k not in last}, strict=False)
    if unexpected or any(not k.startswith("hint.") and k not in last for k in missing):
        raise ValueError(f"--init-from {cfg.init_from} is a {start.arch}, this run trains {cfg.arch}")


def record_provenance(run_dir: Path, cfg: TrainConfig, resume: bool) -> dict:
    """Write (or, on resume, extend) ``provenance.json`` (``provenance``): the parents are ``init_from``,
    ``teacher``, the ``blur_estimator``, ``shape_reader`` and ``covariance_reader`` that read the crops; the data
    manifests are those ``sharpen train fetch-photos`` writes. Model files carry it."""
    path = run_dir / PROVENANCE
    if resume and path.exists():
        prov = json.loads(path.read_text())
        prov.setdefault("resumed_with", []).append(_command())
    else:
        prov = provenance({"init_from": cfg.init_from, "teacher": cfg.teacher,
                           "blur_estimator": _crop_estimator(cfg), "shape_reader": _crop_shape_reader(cfg),
                           "covariance_reader": _crop_covariance_reader(cfg)}, cfg.data)
    path.write_text(json.dumps(prov, indent=1))
    return prov


def provenance(parents: dict[str, str | None], data: list) -> dict:
    """This process's command line, each named parent weight file (role -> path; None: none) by sha256, each
    data folder's ``manifest.json`` by sha256, the code's git commit and the torch version."""
    manifests = {str(d): file_sha256(Path(d) / "manifest.json") for d in data if (Path(d) / "manifest.json").is_file()}
    named = {k: {"path": v, "sha256": file_sha256(Path(v))} for k, v in parents.items() if v}
    return {"command": _command(), "parents": named, "data_manifests": manifests, "git_commit": git_commit(),
            "torch": str(torch.__version__)}


def _command() -> str:
    return " ".join(shlex.quote(a) for a in sys.argv)


def _crop_estimator(cfg: TrainConfig) -> str | None:
    """The estimator file that reads the training crops (recorded as a parent), if the run asks it."""
    if (cfg.hint_source != "estimate" or not hint_size(cfg.arch)) and hint_size(cfg.arch) < 6:
        return None   # (a shape-hinted student's crops are always read: the shape reader is told σ̂)
    from shared.blur_estimate import ESTIMATOR_PATH

    return cfg.blur_estimator or str(ESTIMATOR_PATH)


def _crop_shape_reader(cfg: TrainConfig) -> str | None:
    """The shape reader file that read the training crops (recorded as a parent), for a shape-hinted network."""
    if hint_size(cfg.arch) < 6:
        return None
    from shared.shape_reader import READER_PATH

    return str(READER_PATH)


def _crop_covariance_reader(cfg: TrainConfig) -> str | None:
    """The blur-covariance reader file that read the training crops (a parent), for a covariance-hinted network."""
    if hint_size(cfg.arch) != 9:
        return None
    from shared.blur_estimate import COVARIANCE_PATH

    return str(COVARIANCE_PATH)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
    except OSError:
        return None
    return out.stdout.strip() or None


def _model_meta(config: dict, history: list[dict], step: int, run_dir: Path) -> dict:
    split = json.loads((run_dir / "split.json").read_text())
    prov = run_dir / PROVENANCE
    return {"config": config, "metrics": history[-1] if history else {}, "epochs": len(history), "steps": step,
            "provenance": json.loads(prov.read_text()) if prov.is_file() else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "teacher_init": config["teacher_init"] if config["arch"] in nets.TEACHERS else None,
            "feature_init": config["feature_init"] if config["w_feature_kd"] > 0 else None,
            "train_files": [Path(p).name for p in split["train"]],
            "val_files": [Path(p).name for p in split["val"]]}


def export_checkpoint(run_dir: Path | str, out: Path | str | None = None, half: bool = False) -> Path:
    """Write a model file from a run's last checkpoint (e.g. of a run that was stopped early); ``half``
    stores float16 weights (half the size; they load into float32 networks)."""
    run_dir = Path(run_dir)
    ckpt = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=False)
    net = nets.build(ckpt["config"]["arch"])
    net.load_state_dict(ckpt["model"])
    net = net.half() if half else net
    out = Path(out or run_dir / MODEL)
    save_model(out, net, ckpt["config"]["arch"], _model_meta(ckpt["config"], ckpt["history"], ckpt["step"], run_dir))
    return out
