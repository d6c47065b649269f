"""Networks by name. Each is a pure ``nn.Module``; training logic lives in ``trainer/``.

Students are four 3x3 convolutions (58k–66k parameters); the teacher is a ResNet18 U-Net.
"""
from __future__ import annotations

from torch import nn

from ..architectures import ARCHITECTURES, FRONT_END_RADIUS, STUDENT_NAMES, TEACHERS, WIENER_FRONT_END
from . import wiener
from .student import FourConvStudent, StudentSpec
from .teacher import ResNet18Features, ResNet18UNet, WeightsUnavailable, WienerResNet18UNet, resolve_init

STUDENTS: dict[str, StudentSpec] = {
    # the original design, output used directly, sees 9x9 pixels
    "student-seed": StudentSpec(residual=False),
    # the same convolutions with a global residual
    "student": StudentSpec(residual=True),
    # dilations 1,2,4,1: sees 17x17 pixels at the same cost
    "student-dilated": StudentSpec(residual=True, dilations=(1, 2, 4, 1)),
    # pixel-unshuffle 2: 12 channels at half resolution, sees 19x19 pixels, ~3.7x fewer FLOPs per pixel
    "student-s2d": StudentSpec(residual=True, unshuffle=2),
    # both: half resolution and dilations 1,2,2,1, sees 27x27 pixels
    "student-s2d-dilated": StudentSpec(residual=True, unshuffle=2, dilations=(1, 2, 2, 1)),
    # student-s2d told the image's blur σ (estimated from the whole image by shared.blur_estimate)
    "student-s2d-hint": StudentSpec(residual=True, unshuffle=2, blur_hint=True),
    # student-s2d behind a Wiener front end told the estimated σ and noise: starts as blind Wiener
    "student-s2d-wiener": StudentSpec(residual=True, unshuffle=2, wiener=True),
    # student-s2d-wiener that also blends, per pixel, a bank of other Wiener filters and the input itself
    "student-s2d-wbank": StudentSpec(residual=True, unshuffle=2, wiener=True, bank=True),
    # student-s2d-wbank whose other filters run on luma (their differences shared by R, G and B): faster
    "student-s2d-wbank-luma": StudentSpec(residual=True, unshuffle=2, wiener=True, bank=True, bank_luma=True),
    # student-s2d-wbank with half the middle layer (widths 64, 32, 32) and the two filters of another σ left out
    # of its bank (those of another balance kept): the faster one, pruned from a student-s2d-wbank
    # (``trainer.prune``) and distilled from it
    "student-s2d-wbank-lean": StudentSpec(residual=True, unshuffle=2, wiener=True, bank=True, widths=(64, 32, 32),
                                          bank_filters=(2, 3)),
    # student-s2d-wbank-lean also told the blur's shape (``shared.shape_reader``): its hint weights for the
    # shape start at zero, so it starts as the lean student it extends
    "student-s2d-wbank-shape": StudentSpec(residual=True, unshuffle=2, wiener=True, bank=True, widths=(64, 32, 32),
                                           bank_filters=(2, 3), shape_hint=True),
    # student-s2d-wbank-shape whose front end deconvolves with the anisotropic Gaussian of the blur's read
    # covariance (``shared.blur_estimate.estimate_covariance``): the same weights, another front-end kernel
    "student-s2d-wbank-shape-cov": StudentSpec(residual=True, unshuffle=2, wiener=True, bank=True,
                                               widths=(64, 32, 32), bank_filters=(2, 3), shape_hint=True,
                                               covariance=True),
}
assert tuple(STUDENTS) == STUDENT_NAMES, "shared/architectures.py lists the students by name, in this order"
assert {n for n, spec in STUDENTS.items() if spec.wiener} | {"teacher-wiener"} == set(WIENER_FRONT_END) \
    and wiener.RADIUS == FRONT_END_RADIUS, "shared/architectures.py names the Wiener front ends and their radius"


def build(arch: str, *, teacher_init: str = "random") -> nn.Module:
    """Build a network by architecture name (see ``ARCHITECTURES``)."""
    if arch in STUDENTS:
        return FourConvStudent(STUDENTS[arch])
    if arch == "teacher":
        return ResNet18UNet(init=teacher_init)
    if arch == "teacher-wiener":
        return WienerResNet18UNet(init=teacher_init)
    raise ValueError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


__all__ = ["ARCHITECTURES", "STUDENTS", "TEACHERS", "FourConvStudent", "ResNet18Features", "ResNet18UNet",
           "StudentSpec", "WeightsUnavailable", "WienerResNet18UNet", "build", "count_parameters", "resolve_init"]
