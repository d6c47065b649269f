"""A fixed Wiener deconvolution front end, in ``torch.fft``, told each image's blur σ and noise level.

For an image blurred by a Gaussian of σ, the Wiener filter G / (G² + λ|L|²) (G the blur's frequency
response, L the Laplacian's: scikit-image's regularised form) is the classical, learning-free answer;
λ, the balance, grows with the noise (a noisy image must be
sharpened less). Here the filter is turned into a spatial kernel of ``RADIUS`` pixels (so tiled inference
stays exact: the front end sees ``RADIUS`` pixels around each output pixel) and applied by FFT convolution.
λ = exp(a) + exp(b)·n_fine² + exp(c)·n_coarse², the noise levels in 1/255 units; a, b, c are trainable.

Layout: NCHW float RGB in [0, 1]; ``sigma`` and the two noise readings are (N,) tensors.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

RADIUS = 32     # half-width of the spatial Wiener kernel: enough for σ = 3 at balance 1e-3 (16 lost 0.17 SSIM there)
_GRID = 128     # the kernel is designed on a 128 x 128 frequency grid (at least 4 x RADIUS)


def gaussian_response(sigma: torch.Tensor, grid: int = _GRID) -> torch.Tensor:
    """(N, grid, grid) real frequency response of the sampled, normalised Gaussian of each σ (OpenCV-like)."""
    r = torch.arange(grid, device=sigma.device, dtype=torch.float32)
    r = torch.minimum(r, grid - r)                       # circular distance from the origin
    s = sigma.float().clamp_min(0.15)[:, None]
    g1 = torch.exp(-(r[None, :] ** 2) / (2 * s * s))     # (N, grid): separable sampled Gaussian
    g1 = g1 / g1.sum(1, keepdim=True)
    f1 = torch.fft.fft(g1, dim=1).real                   # real: the kernel is symmetric
    return f1[:, :, None] * f1[:, None, :]


def gaussian_response_cov(cov: torch.Tensor, grid: int = _GRID) -> torch.Tensor:
    """(N, grid, grid) real frequency response of the sampled, normalised anisotropic Gaussian of each 2 × 2
    covariance (N, 2, 2) (x, y), rows y: a blur with a direction (camera shake). Isotropic σ² I gives
    ``gaussian_response(σ)`` to float rounding."""
    r = torch.arange(grid, device=cov.device, dtype=torch.float32)
    d = torch.where(r <= grid // 2, r, r - grid)         # signed circular offset from the origin
    vals, vecs = torch.linalg.eigh(cov.double())
    prec = (vecs @ torch.diag_embed(1 / vals.clamp_min(0.15 ** 2)) @ vecs.transpose(-1, -2)).float()
    yy, xx = d[:, None], d[None, :]
    q = (prec[:, 0, 0, None, None] * xx * xx + 2 * prec[:, 0, 1, None, None] * xx * yy
         + prec[:, 1, 1, None, None] * yy * yy)
    g = torch.exp(-0.5 * q)
    g = g / g.sum(dim=(1, 2), keepdim=True)
    return torch.fft.fft2(g).real                        # real: the kernel is centrally symmetric


def laplacian_power(grid: int = _GRID, device=None) -> torch.Tensor:
    """|L|² of the 3 x 3 Laplacian [[0,-1,0],[-1,4,-1],[0,-1,0]] on the grid: the regulariser of
    scikit-image's ``restoration.wiener`` (0 at DC, so brightness is kept; largest at high frequencies)."""
    f = 2 * math.pi * torch.arange(grid, device=device, dtype=torch.float32) / grid
    lap = 4 - 2 * torch.cos(f)[:, None] - 2 * torch.cos(f)[None, :]
    return lap * lap


def wiener_kernels(sigma: torch.Tensor, balance: torch.Tensor, radius: int = RADIUS) -> torch.Tensor:
    """(N, 2r+1, 2r+1) spatial kernels of the Wiener filter G / (G² + λ|L|²) for Gaussian blur σ (N,) — or of
    covariance (N, 2, 2), an anisotropic Gaussian — and balance λ (scikit-image's definition), each summing
    to 1."""
    g = gaussian_response_cov(sigma) if sigma.ndim == 3 else gaussian_response(sigma)
    w = g / (g * g + balance.float()[:, None, None] * laplacian_power(g.shape[-1], g.device))
    k = torch.fft.ifft2(w.to(torch.complex64)).real
    k = torch.roll(k, shifts=(radius, radius), dims=(1, 2))[:, : 2 * radius + 1, : 2 * radius + 1]
    return k / k.sum(dim=(1, 2), keepdim=True)


def _fast_len(n: int) -> int:
    """The smallest even 2^a·3^b·5^c ≥ n (FFT-friendly: an odd length such as 1125 makes a real FFT about
    twice as slow on the CPU as 1152)."""
    best = 1 << max(1, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35 * 2
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def kernel_spectra(kernels: torch.Tensor, fh: int, fw: int, axis_symmetric: bool = True) -> torch.Tensor:
    """The real frequency responses of centred, centrally symmetric kernels (..., K, K) on an fh x fw grid,
    transposed as ``_spectra`` wants them: (..., fw/2+1, fh). A cosine sum over the K x K taps in two small
    matrix products (an rfft2 of the zero-padded kernel would cost a whole-image FFT per kernel); kernels not
    also symmetric about both axes (``axis_symmetric=False``: an anisotropic Gaussian's Wiener filter) add
    the product of the sines (cos(a + b) = cos a cos b − sin a sin b)."""
    r = kernels.shape[-1] // 2
    taps = torch.arange(-r, r + 1, device=kernels.device)

    def phases(n: int, freqs: int) -> torch.Tensor:   # (freqs, K): 2π f t / n, the phase reduced exactly
        f = torch.arange(freqs, device=kernels.device)
        return (2 * math.pi / n) * torch.remainder(f[:, None] * taps[None, :], n).float()

    with torch.autocast(kernels.device.type, enabled=False):   # fp32 even under fp16 autocast (as an FFT is)
        pw, ph = phases(fw, fw // 2 + 1), phases(fh, fh)
        kt = kernels.float().transpose(-1, -2)
        out = torch.cos(pw) @ kt @ torch.cos(ph).T
        return out if axis_symmetric else out - torch.sin(pw) @ kt @ torch.sin(ph).T


def fft_filter(x: torch.Tensor, kernels: torch.Tensor, axis_symmetric: bool = True) -> torch.Tensor:
    """Filter each image of ``x`` (N, C, H, W) with its own centrally symmetric kernel (N, K, K), K = 2r+1
    (``axis_symmetric``: about both axes too), using reflect padding at the borders (replicate when the image
    is too small to reflect)."""
    return fft_filter_bank(x, kernels[:, None], axis_symmetric)[:, 0]


def _spectra(x: torch.Tensor, kernels: torch.Tensor, axis_symmetric: bool = True):
    """The padded image's spectrum (N, 1, C, fw/2+1, fh) and the kernels' real responses (N, M, 1, fw/2+1, fh),
    both transposed (the vertical frequency last, so the inverse transforms run along contiguous rows: twice
    as fast on the CPU as ``irfft2``); the FFT size (fh, fw) and the output window (rows, columns). Reflect
    padding; replicate when the image is too small to reflect."""
    n, c, h, w = x.shape
    r = kernels.shape[-1] // 2
    mode = "reflect" if r < h and r < w else "replicate"
    xp = F.pad(x.float(), (r, r, r, r), mode=mode)
    fh, fw = _fast_len(h + 2 * r), _fast_len(w + 2 * r)
    rows = torch.fft.rfft(xp, n=fw, dim=-1).transpose(-1, -2).contiguous()
    spec = torch.fft.fft(rows, n=fh, dim=-1)[:, None]
    kspec = kernel_spectra(kernels, fh, fw, axis_symmetric)[:, :, None]
    return spec, kspec, (fh, fw), (slice(r, r + h), slice(r, r + w))


def _inverse(product: torch.Tensor, size: tuple[int, int], window: tuple[slice, slice]) -> torch.Tensor:
    """The real image (..., H, W) in ``window`` of a transposed half spectrum (..., fw/2+1, fh)."""
    ys, xs = window
    cols = torch.fft.ifft(product, dim=-1)[..., ys]
    return torch.fft.irfft(cols.transpose(-1, -2), n=size[1], dim=-1)[..., xs]


def fft_filter_bank(x: torch.Tensor, kernels: torch.Tensor, axis_symmetric: bool = True) -> torch.Tensor:
    """Filter each image of ``x`` (N, C, H, W) with each of its M symmetric kernels (N, M, K, K), K = 2r+1,
    reflect-padded as ``fft_filter``: (N, M, C, H, W). The image's spectrum is computed once for all M."""
    spec, kspec, size, window = _spectra(x, kernels, axis_symmetric)
    return _inverse(spec * kspec, size, window)


# The other Wiener filters a bank student blends per pixel (σ factor, balance factor): sharper and softer than the
# estimate (it errs, and a defocus disk or a shake is not a Gaussian), and more or less regularised (noise, ringing).
BANK = ((1.25, 1.0), (0.8, 1.0), (1.0, 10.0), (1.0, 0.2))


class WienerFrontEnd(nn.Module):
    """x, σ, noise (fine, coarse) → the Wiener-deconvolved x. Three trainable numbers set the balance. ``sigma``
    is (N,) σ of a Gaussian blur, or (N, 2, 2) the covariance of an anisotropic one (``wiener_kernels``)."""

    radius = RADIUS

    def __init__(self, log_base: float = math.log(2e-3), log_fine: float = math.log(1e-3),
                 log_coarse: float = math.log(1e-3)):
        super().__init__()
        self.log_balance = nn.Parameter(torch.tensor([log_base, log_fine, log_coarse]))

    def balance(self, noise_fine: torch.Tensor, noise_coarse: torch.Tensor) -> torch.Tensor:
        a, b, c = self.log_balance.exp()
        return a + b * (noise_fine * 255) ** 2 + c * (noise_coarse * 255) ** 2

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, noise_fine: torch.Tensor,
                noise_coarse: torch.Tensor) -> torch.Tensor:
        k = wiener_kernels(sigma, self.balance(noise_fine.float(), noise_coarse.float()))
        return fft_filter(x, k, axis_symmetric=sigma.ndim == 1).to(x.dtype)

    def bank_filters(self, x: torch.Tensor, sigma: torch.Tensor, noise_fine: torch.Tensor,
                     noise_coarse: torch.Tensor, on_luma: bool = False, bank: tuple = BANK):
        """Yields this front end's output, then the Wiener filters of ``bank`` (σ and λ factors of the
        estimated ones), one at a time, each (N, C, H, W) — or (N, 1, H, W) filters of the image's luma when
        ``on_luma`` — from one spectrum of ``x``."""
        spec, kspec, size, window = _spectra(x, self._bank_kernels(x, sigma, noise_fine, noise_coarse, bank),
                                             axis_symmetric=sigma.ndim == 1)
        spec = spec[:, 0]
        for m in range(kspec.shape[1]):
            yield _inverse(spec * kspec[:, m], size, window).to(x.dtype)
            if m == 0 and on_luma:
                spec = luma(spec)           # the luma's spectrum: the same weighted sum of the channels' spectra

    def _bank_kernels(self, x, sigma, noise_fine, noise_coarse, bank) -> torch.Tensor:
        lam = self.balance(noise_fine.float(), noise_coarse.float())
        scales = torch.tensor([(1.0, 1.0), *bank], device=x.device)          # (M, 2): σ factor, λ factor
        if sigma.ndim == 3:   # a covariance: a σ factor f scales it by f²
            s = (sigma.float()[:, None] * scales[None, :, 0, None, None] ** 2).reshape(-1, 2, 2)
        else:
            s = (sigma.float()[:, None] * scales[None, :, 0]).reshape(-1)
        b = lam[:, None] * scales[None, :, 1]
        return wiener_kernels(s, b.reshape(-1)).reshape(x.shape[0], len(scales), *([2 * RADIUS + 1] * 2))


LUMA = (0.299, 0.587, 0.114)   # ITU-R BT.601 weights of R, G, B


def luma(x: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB → (..., 1, H, W) luma."""
    w = torch.tensor(LUMA, device=x.device, dtype=x.dtype)   # (a spectrum's luma too: x complex)
    return (x * w[:, None, None]).sum(dim=-3, keepdim=True)

