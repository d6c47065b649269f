"""Losses: pixel loss to ground truth, output distillation to the teacher, ResNet18 feature distillation."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shared.metrics import ssim_torch
from shared.nets import ResNet18Features

from .config import TrainConfig


def pixel_loss(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "mse":
        return F.mse_loss(pred, target)
    raise ValueError(f"unknown pixel loss {kind!r}: use l1 or mse")


def balanced_pixel_loss(kind: str, pred: torch.Tensor, target: torch.Tensor, blurred: torch.Tensor) -> torch.Tensor:
    """Mean over crops of loss(pred) / loss(blurred input): 1.0 = no better than doing nothing."""
    dims = tuple(range(1, pred.ndim))
    err = (pred - target).abs() if kind == "l1" else (pred - target) ** 2
    base = (blurred - target).abs() if kind == "l1" else (blurred - target) ** 2
    return (err.mean(dims) / base.mean(dims).clamp_min(1e-4)).mean()


def no_harm_loss(pred: torch.Tensor, target: torch.Tensor, floor: torch.Tensor,
                 blurred: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over crops of max(0, L1(pred) − L1(floor)): zero for every crop the network does not make worse
    than ``floor``, so it learns to hold back where its correction does not pay. Given ``blurred`` as well,
    the floor of each crop is the better of the two: a crop its front end makes worse than its input (a
    sharp one) is charged against the input."""
    dims = tuple(range(1, pred.ndim))
    best = (floor - target).abs().mean(dims)
    if blurred is not None:
        best = torch.minimum(best, (blurred - target).abs().mean(dims))
    return torch.relu((pred - target).abs().mean(dims) - best).mean()


def ssim_harm_loss(pred: torch.Tensor, target: torch.Tensor, blurred: torch.Tensor) -> torch.Tensor:
    """Mean over crops of max(0, SSIM(blurred) − SSIM(pred)): what each crop made worse than its input loses."""
    with torch.no_grad():
        floor = ssim_torch(blurred, target)
    return torch.relu(floor - ssim_torch(pred, target)).mean()


class DistillationLoss(nn.Module):
    """Weighted sum of the three terms; returns (total, {term: detached tensor}) for logging."""

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.cfg = cfg
        self.features = ResNet18Features(cfg.feature_init, cfg.feature_layers) if cfg.w_feature_kd > 0 else None

    def forward(self, pred: torch.Tensor, sharp: torch.Tensor, teacher_out: torch.Tensor | None,
                blurred: torch.Tensor | None = None, floor: torch.Tensor | None = None):
        """``floor``: what the network starts from (its Wiener front end's output, or the input); with
        ``w_no_harm`` each crop whose pixel error exceeds the floor's pays the excess again, and with
        ``w_no_harm_ssim`` each crop whose SSIM falls below its input's pays the loss."""
        cfg = self.cfg
        if cfg.balance_sigma:
            terms = {"pixel": balanced_pixel_loss(cfg.pixel_loss, pred, sharp, blurred) * cfg.w_pixel}
        else:
            terms = {"pixel": pixel_loss(cfg.pixel_loss, pred, sharp) * cfg.w_pixel}
        if cfg.w_ssim > 0:
            terms["ssim"] = (1 - ssim_torch(pred, sharp).mean()) * cfg.w_ssim
        if cfg.w_no_harm > 0:
            floor_input = blurred if cfg.no_harm_floor == "better" and floor is not None else None
            terms["no_harm"] = no_harm_loss(pred, sharp, blurred if floor is None else floor,
                                            floor_input) * cfg.w_no_harm
        if cfg.w_no_harm_ssim > 0:
            if blurred is None:
                raise ValueError("the SSIM harm term needs the degraded input")
            terms["no_harm_ssim"] = ssim_harm_loss(pred, sharp, blurred) * cfg.w_no_harm_ssim
        if cfg.w_output_kd > 0:
            if teacher_out is None:
                raise ValueError("output distillation needs a teacher (--teacher PATH)")
            terms["output_kd"] = pixel_loss(cfg.pixel_loss, pred, teacher_out) * cfg.w_output_kd
        if self.features is not None:
            ref = teacher_out if teacher_out is not None else sharp
            with torch.no_grad():
                ref_feats = self.features(ref)
            feats = self.features(pred)
            terms["feature_kd"] = sum(F.mse_loss(a, b) for a, b in zip(feats, ref_feats)) * cfg.w_feature_kd
        return sum(terms.values()), {k: v.detach() for k, v in terms.items()}
