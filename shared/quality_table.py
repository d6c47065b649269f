"""The quality table per degradation family (``shared.degrade.EVAL_FAMILIES``): does a method help, and
does it ever harm?

For each family and method: mean SSIM/PSNR of the 8-bit output, the gain over the degraded input, how many
photos it made worse (SSIM below the input's by more than the family's tolerance) and the worst one, and
the **grain** it adds (``grain``). Each photo gets its own seeded draw of the family (noise, shake path),
the same for every method. Classical baselines get their one free parameter chosen per family on a
separate tuning split (never on the photos of the table):
- unsharp mask: (radius, amount) from ``UNSHARP_GRID``;
- blind Wiener: the project's blur estimate σ̂ (``shared.blur_estimate``), then the reflect-padded Wiener
  deconvolution of ``shared.baselines`` with a Gaussian of σ̂, balance from ``WIENER_BALANCE_GRID``;
- Wiener, known kernel (Gaussian families only): the true σ, balance likewise.
Images: float32 HWC RGB in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
import torch

from .baselines import UNSHARP_GRID, unsharp_mask, wiener_deconvolve
from .blur_estimate import estimate_blur
from .degrade import EVAL_FAMILIES, Degradation, degrade, quantize8
from .metrics import psnr_torch, ssim_torch

BALANCE_GRID = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
FLAT_STD = 0.01        # ground-truth pixels whose 7x7 gray std is below this are "flat"


def tolerance(family: str) -> float:
    """How much lower than its input a photo's SSIM may be before it counts as made worse."""
    return 0.002 if family.startswith("gaussian σ") else 0.005


def _highpass(gray: np.ndarray) -> np.ndarray:
    return gray - cv2.GaussianBlur(gray, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT_101)


def flat_mask(sharp: np.ndarray) -> np.ndarray:
    """Pixels where the ground truth is flat: 7x7 local std of its gray below ``FLAT_STD``."""
    g = cv2.cvtColor(np.ascontiguousarray(sharp, np.float32), cv2.COLOR_RGB2GRAY)
    mean = cv2.blur(g, (7, 7))
    var = cv2.blur(g * g, (7, 7)) - mean * mean
    return np.sqrt(np.clip(var, 0, None)) < FLAT_STD


def grain(output: np.ndarray, sharp: np.ndarray) -> float:
    """High-frequency energy added where the ground truth is flat, in 1/255 units: RMS of the gray
    high-pass (x − Gaussian(x, 1)) of the output over the flat pixels, minus the same of the ground truth.
    0 when the output is as smooth as the truth there; NaN when nothing is flat."""
    mask = flat_mask(sharp)
    if not mask.any():
        return float("nan")
    rms = lambda x: float(np.sqrt(np.mean(_highpass(cv2.cvtColor(np.ascontiguousarray(x, np.float32),  # noqa: E731
                                                                 cv2.COLOR_RGB2GRAY))[mask] ** 2)))
    return 255.0 * (rms(output) - rms(sharp))


def scores(output: np.ndarray, sharp: np.ndarray) -> tuple[float, float]:
    """(SSIM, PSNR) of the 8-bit output against the truth."""
    a = torch.from_numpy(quantize8(output)).permute(2, 0, 1)[None]
    b = torch.from_numpy(sharp).permute(2, 0, 1)[None]
    return float(ssim_torch(a, b)), float(psnr_torch(a, b))


def degraded_set(images: list[tuple[str, np.ndarray]], deg: Degradation) -> list[np.ndarray]:
    """Photo i degraded by its own seeded draw of ``deg`` (the same for every method)."""
    return [degrade(img, deg, np.random.default_rng(i))[0] for i, (_name, img) in enumerate(images)]


Method = Callable[[np.ndarray, str], np.ndarray]   # (degraded image, family) -> output


def _best(fn: Callable[[int, np.ndarray, object], np.ndarray], grid, inputs, sharp) -> object:
    """The grid value whose outputs fn(photo index, input, value) have the best mean SSIM."""
    return max(grid, key=lambda g: np.mean([scores(fn(i, x, g), s)[0] for i, (x, s) in enumerate(zip(inputs, sharp))]))


def tune_baselines(images: list[tuple[str, np.ndarray]], families: dict[str, Degradation] = EVAL_FAMILIES,
                   progress=None) -> dict[str, dict]:
    """Per family, the unsharp and Wiener settings with the best mean SSIM on ``images`` (the tuning split)."""
    sharp = [img for _, img in images]
    tuned = {}
    for family, deg in families.items():
        inputs = degraded_set(images, deg)
        sig = [estimate_blur(x) for x in inputs]
        t = {"unsharp": _best(lambda i, x, g: unsharp_mask(x, *g), UNSHARP_GRID, inputs, sharp),
             "blind_wiener": _best(lambda i, x, b: wiener_deconvolve(x, sig[i], b), BALANCE_GRID, inputs, sharp)}
        if family.startswith("gaussian σ"):
            s = deg.sigma[0]
            t["wiener"] = _best(lambda i, x, b: wiener_deconvolve(x, s, b), BALANCE_GRID, inputs, sharp)
        tuned[family] = t
        if progress:
            progress(family, t)
    return tuned


def baseline_methods(tuned: dict[str, dict]) -> dict[str, Method]:
    """The classical methods with their tuned settings, as (degraded, family) -> output."""
    def wiener_known(x, family):
        if "wiener" not in tuned[family]:
            return None
        return wiener_deconvolve(x, EVAL_FAMILIES[family].sigma[0], tuned[family]["wiener"])
    return {
        "unsharp mask (tuned per family)": lambda x, f: unsharp_mask(x, *tuned[f]["unsharp"]),
        "Wiener, known σ (tuned)": wiener_known,
        "blind Wiener (σ̂, tuned balance)": lambda x, f: wiener_deconvolve(x, estimate_blur(x), tuned[f]["blind_wiener"]),
    }


@dataclass
class FamilyRow:
    family: str
    method: str
    ssim: float
    psnr: float
    input_ssim: float
    input_psnr: float
    worse: int               # photos whose SSIM fell below the input's by more than the tolerance
    worst: float             # the lowest per-photo SSIM gain
    worst_photo: str
    grain: float             # mean added grain, 1/255 units
    images: int


def family_table(images: list[tuple[str, np.ndarray]], methods: dict[str, Method],
                 families: dict[str, Degradation] = EVAL_FAMILIES, progress=None) -> list[FamilyRow]:
    """One row per (family, method), the degraded input first."""
    rows = []
    sharp = [img for _, img in images]
    names = [n for n, _ in images]
    for family, deg in families.items():
        inputs = degraded_set(images, deg)
        base = [scores(x, s) for x, s in zip(inputs, sharp)]
        b_ssim, b_psnr = float(np.mean([b[0] for b in base])), float(np.mean([b[1] for b in base]))
        for method, fn in {"degraded input": lambda x, f: x, **methods}.items():
            outs = [fn(x, family) for x in inputs]
            if outs[0] is None:
                continue
            sc = [scores(o, s) for o, s in zip(outs, sharp)]
            gain = np.array([a[0] - b[0] for a, b in zip(sc, base)])
            k = int(np.argmin(gain))
            rows.append(FamilyRow(family, method, float(np.mean([a[0] for a in sc])), float(np.mean([a[1] for a in sc])),
                                  b_ssim, b_psnr, int((gain < -tolerance(family)).sum()), float(gain[k]), names[k],
                                  float(np.nanmean([grain(o, s) for o, s in zip(outs, sharp)])), len(images)))
            if progress:
                progress(rows[-1])
    return rows


def format_family_table(rows: list[FamilyRow]) -> str:
    """Plain text, one block per family; Δ are gains over the degraded input of the same photos."""
    lines = []
    width = max(len(r.method) for r in rows)
    for family in dict.fromkeys(r.family for r in rows):
        part = [r for r in rows if r.family == family]
        lines.append(f"{family}  ({part[0].images} photos; 'worse' = SSIM below input by > {tolerance(family)})")
        lines.append(f"  {'method':<{width}}  {'SSIM':>7} {'ΔSSIM':>8}  {'PSNR':>6} {'ΔPSNR':>6}  {'worse':>5}  "
                     f"{'worst ΔSSIM (photo)':<34} {'grain':>6}")
        for r in part:
            worst = f"{r.worst:+.4f} ({r.worst_photo[:24]})" if r.method != "degraded input" else ""
            lines.append(f"  {r.method:<{width}}  {r.ssim:7.4f} {r.ssim - r.input_ssim:+8.4f}  {r.psnr:6.2f} "
                         f"{r.psnr - r.input_psnr:+6.2f}  {r.worse if r.method != 'degraded input' else '':>5}  "
                         f"{worst:<34} {r.grain:+6.2f}")
        lines.append("")
    return "\n".join(lines)


GUARD_LOWS = (0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
GUARD_WIDTHS = (0.1, 0.2, 0.35)


def choose_guard(model, images: list[tuple[str, np.ndarray]], families: dict[str, Degradation] = EVAL_FAMILIES,
                 progress=None) -> dict:
    """The guard (``LoadedModel.guard``) for ``model`` on the tuning photos: of the candidates (no guard, or
    lo in ``GUARD_LOWS`` with hi = lo + a width in ``GUARD_WIDTHS``), the one whose outputs harm no photo of
    any family beyond the family's tolerance and, among those, has the best mean SSIM (the least total harm
    when none is harmless). Returns {"guard", "mean_ssim", "harm", "worse", "candidates"}."""
    from .inference import sharpen_array   # late: inference imports this package's neighbours

    raw = model.without_guard()
    cases = []   # (family, photo index, σ̂, input, raw output, input SSIM, raw output SSIM)
    sharp = [img for _, img in images]
    for family, deg in families.items():
        for i, x in enumerate(degraded_set(images, deg)):
            hint = raw.estimate_hint(x)
            out = sharpen_array(raw, x, hint=hint)
            cases.append((family, i, hint[0] if hint else 9.9, x, out, scores(x, sharp[i])[0],
                          scores(out, sharp[i])[0]))
        if progress:
            progress(family)
    candidates = [None] + [(lo, round(lo + w, 3)) for lo in GUARD_LOWS for w in GUARD_WIDTHS]
    results = []
    for cand in candidates:
        ssims, harm, worse = [], 0.0, 0
        for family, i, sig, x, out, s_in, s_out in cases:
            g = 1.0 if cand is None else min(1.0, max(0.0, (sig - cand[0]) / (cand[1] - cand[0])))
            s = s_out if g == 1.0 else s_in if g == 0.0 else scores(x + g * (out - x), sharp[i])[0]
            ssims.append(s)
            excess = (s_in - s) - tolerance(family)
            harm += max(0.0, excess)
            worse += excess > 0
        results.append({"guard": cand, "mean_ssim": float(np.mean(ssims)), "harm": harm, "worse": worse})
    best = min(results, key=lambda r: (r["harm"] > 0, r["harm"], -r["mean_ssim"]))
    return {**best, "candidates": results}
