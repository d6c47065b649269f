"""Four-convolution student networks.

Every student has the same four 3x3 convolutions (widths 64, 64, 32, out) and differs only in where they
run and how far they see. State-dict keys (``body.0.weight`` … ``body.6.bias``) are a public contract: a
model file written by one version loads in the next.

Layout: tensors are NCHW float, RGB in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from .wiener import BANK, WienerFrontEnd, luma


@dataclass(frozen=True)
class StudentSpec:
    """What distinguishes one four-convolution student from another."""
    residual: bool = True            # output = input + net(input); the seed design used the net output directly
    unshuffle: int = 1               # pixel-unshuffle factor: 2 runs the convolutions at half resolution
    dilations: tuple[int, ...] = (1, 1, 1, 1)   # per-convolution dilation (padding follows it)
    widths: tuple[int, ...] = (64, 64, 32)      # hidden widths of the seed design
    blur_hint: bool = False          # a per-image blur estimate (``shared.blur_estimate``) shifts each hidden
                                     # layer before its ReLU: one number that tells the convolutions how much
                                     # to sharpen
    wiener: bool = False             # a Wiener front end (``shared.nets.wiener``) deconvolves the input with the
                                     # estimated σ and a noise-dependent balance; the convolutions see input and
                                     # Wiener output and add a correction to the latter (zero at start: the
                                     # untrained student *is* the blind Wiener filter). Hint: (σ, noise fine,
                                     # noise coarse)
    bank: bool = False               # with ``wiener``: the convolutions also weigh, per pixel, the differences
                                     # between the front end's output and other Wiener filters (``wiener.BANK``)
                                     # and the input itself: where to sharpen more or less, or not at all
                                     # (zero at start too)
    bank_luma: bool = False          # with ``bank``: the other filters run on luma only, their differences
                                     # shared by the three channels (5 inverse FFT channels, not 15)
    bank_filters: tuple[int, ...] = (0, 1, 2, 3)   # with ``bank``: which filters of ``wiener.BANK`` it blends
    shape_hint: bool = False         # with ``wiener``: also told the probabilities that the blur is Gaussian,
                                     # defocus or shake (``shared.shape_reader``), so it need not hedge between
                                     # their corrections
    covariance: bool = False         # with ``shape_hint``: the front end and its bank deconvolve with the
                                     # anisotropic Gaussian of the blur's covariance read by
                                     # ``shared.blur_estimate.estimate_covariance`` (a shake has a direction)
                                     # instead of the isotropic one of σ̂; hint entries 6-8: cxx, cxy, cyy

    @property
    def directions(self) -> int:
        """Per-pixel blend weights the convolutions output (one per bank filter and one for the input)."""
        return len(self.bank_filters) + 1 if self.bank else 0

    @property
    def bank_scales(self) -> tuple[tuple[float, float], ...]:
        """(σ factor, balance factor) of each other Wiener filter it blends."""
        return tuple(BANK[i] for i in self.bank_filters)

    @property
    def hint_size(self) -> int:
        """Numbers per image the student is told: 0, 1 (σ), 3 (σ and two noise readings), 6 (and the blur's
        shape) or 9 (and the blur's covariance)."""
        if not self.wiener:
            return int(self.blur_hint)
        return 9 if self.covariance else 6 if self.shape_hint else 3


class FourConvStudent(nn.Module):
    """Conv(c,64)→ReLU→Conv(64,64)→ReLU→Conv(64,32)→ReLU→Conv(32,c), optionally residual / unshuffled / dilated."""

    def __init__(self, spec: StudentSpec = StudentSpec()):
        super().__init__()
        self.spec = spec
        chans = 3 * spec.unshuffle ** 2
        widths = (chans * (2 if spec.wiener else 1), *spec.widths, chans + spec.directions * spec.unshuffle ** 2)
        layers: list[nn.Module] = []
        for i, dil in enumerate(spec.dilations):
            layers.append(nn.Conv2d(widths[i], widths[i + 1], 3, padding=dil, dilation=dil))
            if i < len(spec.dilations) - 1:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)
        # hint features (σ − 1.5, (σ − 1.5)²) → a shift per hidden channel; zero-initialised, so a hinted
        # student starts as exactly the unhinted one whose weights it loads
        self.front = WienerFrontEnd() if spec.wiener else None
        n_feats = (7 if spec.shape_hint else 4) if spec.wiener else 2
        self.hint = nn.ModuleList(nn.Linear(n_feats, c, bias=False) for c in spec.widths) if spec.hint_size else None
        for lin in self.hint or ():
            nn.init.zeros_(lin.weight)
        for conv in self.body[:-1:2]:  # He init keeps ReLU pre-activations well away from zero
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        if spec.residual or spec.wiener:
            # Start as the identity (or as the Wiener filter), so an untrained student never hurts. (The trainer warms the learning
            # rate up: at full rate Adam's first, coherent steps push these ReLUs dead.)
            nn.init.zeros_(self.body[-1].weight)
            nn.init.zeros_(self.body[-1].bias)

    @property
    def scale(self) -> int:
        """Input height and width must be multiples of this (``shared.tiled`` pads them with reflected pixels)."""
        return self.spec.unshuffle

    @property
    def receptive_radius(self) -> int:
        """Pixels on each side of an output pixel that can influence it (full resolution)."""
        r = self.spec.unshuffle
        return r * sum(self.spec.dilations) + (r - 1) + (self.front.radius if self.front is not None else 0)

    @property
    def uses_hint(self) -> bool:
        return self.hint is not None

    @property
    def hint_size(self) -> int:
        return self.spec.hint_size

    def front_blur(self, hint: torch.Tensor) -> torch.Tensor:
        """What the Wiener front end deconvolves from hints (N, k): σ̂ (N,), or the covariance (N, 2, 2)."""
        return covariance_hint(hint) if self.spec.covariance else hint[:, 0]

    def _features(self, hint: torch.Tensor) -> torch.Tensor:
        h = hint.reshape(hint.shape[0], -1).float()
        s = h[:, :1] - 1.5
        feats = [s, s * s]
        if self.spec.wiener:  # noise in 1/255 units, compressed
            feats += [torch.log1p(h[:, 1:2] * 255), torch.log1p(h[:, 2:3] * 255)]
        if self.spec.shape_hint:  # P(Gaussian), P(defocus), P(shake)
            feats.append(h[:, 3:6])
        return torch.cat(feats, dim=1)

    def forward(self, x: torch.Tensor, hint: torch.Tensor | None = None) -> torch.Tensor:
        """``hint``: what was estimated for each image of the batch, shape (N,) (σ), (N, 3) (σ, noise fine,
        noise coarse), (N, 6) (and the blur's shape) or (N, 9) (and its covariance); needed by hinted students
        (``hint_size`` > 0)."""
        r = self.spec.unshuffle
        if self.hint is not None and hint is None:
            raise ValueError("this student needs the blur estimate of its input (hint=...)")
        base = x
        bank = None
        if self.front is not None:
            h = hint.reshape(hint.shape[0], -1)
            blur = self.front_blur(h)
            last = self.body[-1]
            zero = not self.training and not last.weight.any() and not last.bias.any()
            if self.spec.bank and not zero:
                # the bank's filters on the three channels, or on luma only (``bank_luma``): one image each
                filters = self.front.bank_filters(x, blur, h[:, 1], h[:, 2], on_luma=self.spec.bank_luma,
                                                  bank=self.spec.bank_scales)
                if torch.is_grad_enabled():
                    base = next(filters)
                    ref = luma(base) if self.spec.bank_luma else base
                    # (N, D-1, C', H, W) differences from the front end's output, and (N, C, H, W) to the input
                    bank = (torch.stack([f - ref for f in filters], dim=1), x - base)
                else:  # inference: the bank's filters one at a time, after the convolutions (less memory)
                    base = next(filters)
                    bank = (filters, x)
            else:
                base = self.front(x, blur, h[:, 1], h[:, 2])
            if zero:
                return base  # a zero correction (the untrained or zero-correction student): skip the convolutions
            x = torch.cat([x, base], dim=1)
        y = self._convolutions(x, None if self.hint is None else self._features(hint).to(x.dtype))
        y = F.pixel_shuffle(y, r) if r > 1 else y
        if bank is not None:  # y: an RGB correction, then one weight per bank direction (the input's last)
            y, weights = y[:, :3], y[:, 3:]
            if torch.is_grad_enabled():
                filtered, towards_input = bank
                y = y + (weights[:, :-1, None] * filtered).sum(dim=1) + weights[:, -1:] * towards_input
            else:  # the same sums without the differences: Σ w·(f − ref) = Σ w·f − ref·Σ w
                filters, inp = bank
                y.addcmul_(weights[:, -1:], inp - base)
                ref = luma(base) if self.spec.bank_luma else base
                # on luma the filters' sum is taken on one channel, then added to R, G and B at once
                acc = torch.zeros_like(ref) if self.spec.bank_luma else y
                acc.sub_(ref * weights[:, :-1].sum(dim=1, keepdim=True))
                for i, filtered in enumerate(filters):
                    acc.addcmul_(weights[:, i:i + 1], filtered)
                if acc is not y:
                    y.add_(acc)
                return y.add_(base)   # in place: y is this call's own tensor
        return base + y if (self.spec.residual or self.front is not None) else y

    def _convolutions(self, x: torch.Tensor, feats: torch.Tensor | None,
                      record: list | None = None) -> torch.Tensor:
        """The four convolutions over ``x`` (pixel-unshuffled first when the student runs at reduced
        resolution), each hidden layer shifted by its hint features before the ReLU.

        Without autograd: the unshuffle is folded into the first convolution (a 3r-wide convolution of stride
        r over the full-resolution image sums the same products without an unshuffled copy); with one hint
        for the whole batch (one image, or the tiles of one) the shift is folded into the convolution's bias;
        the ReLUs run in place. (1024², 2 CPU threads: the four convolutions 348 → 175 ms with the hint
        folded; the first one 166 → 100 ms without the unshuffle.) ``record``: gets each hidden layer's
        rectified output."""
        r = self.spec.unshuffle
        convs = self.body[::2]
        grad = torch.is_grad_enabled()
        strided = not grad and r > 1 and convs[0].dilation == (1, 1)
        y = F.pixel_unshuffle(x, r) if r > 1 and not strided else x
        fold = feats is not None and not grad and (   # (a GPU batch is not read back to ask: that would wait on it)
            feats.shape[0] == 1 or feats.device.type == "cpu" and bool((feats == feats[:1]).all()))
        for i, conv in enumerate(convs):
            bias, shift = conv.bias, None
            if feats is not None and i < len(self.hint):
                shift = self.hint[i](feats)
                if fold:
                    bias, shift = bias + shift[0], None
            if i == 0 and strided:
                y = F.conv2d(y, _full_resolution_weight(conv.weight, r), bias, stride=r,
                             padding=tuple(p * r for p in conv.padding))
            else:
                y = F.conv2d(y, conv.weight, bias, padding=conv.padding, dilation=conv.dilation)
            if i < len(convs) - 1:
                if shift is not None:
                    y = y + shift[:, :, None, None] if grad else y.add_(shift[:, :, None, None])
                y = torch.relu(y) if grad else y.relu_()
                if record is not None:
                    record.append(y)
        return y


def covariance_hint(hint: torch.Tensor) -> torch.Tensor:
    """(N, 2, 2): the blur covariance [[cxx, cxy], [cxy, cyy]] of hints (N, 9)."""
    cxx, cxy, cyy = hint[:, 6].float(), hint[:, 7].float(), hint[:, 8].float()
    return torch.stack([torch.stack([cxx, cxy], -1), torch.stack([cxy, cyy], -1)], -2)


def _full_resolution_weight(weight: torch.Tensor, r: int) -> torch.Tensor:
    """The weight of a convolution on r-unshuffled channels (O, C·r², k, k) as the equivalent kr x kr
    convolution of stride r on the full-resolution image (O, C, kr, kr): unshuffled channel c·r² + dy·r + dx
    at tap (ky, kx) is full-resolution tap (ky·r + dy, kx·r + dx) of channel c."""
    o, cr2, k, _ = weight.shape
    c = cr2 // (r * r)
    w = weight.reshape(o, c, r, r, k, k).permute(0, 1, 4, 2, 5, 3).reshape(o, c, k * r, k * r)
    return w.contiguous(memory_format=torch.channels_last) if weight.is_contiguous(
        memory_format=torch.channels_last) else w.contiguous()
