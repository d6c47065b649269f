"""Line charts drawn on the server as SVG geometry (no chart library, nothing inline for the CSP to refuse):
``line_chart`` turns series of (x, y) points into paths, dots and axis ticks in a fixed viewBox; the
``line_chart`` macro in ``_charts.html`` draws them."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

WIDTH, HEIGHT = 420, 190
LEFT, RIGHT, TOP, BOTTOM = 54, 12, 10, 26  # room for the tick labels


@dataclass
class Series:
    name: str
    css: str                      # class of the line and its dots (colour, dashes)
    path: str = ""
    dots: list[tuple[float, float, str]] = field(default_factory=list)   # x, y, tooltip


@dataclass
class Chart:
    series: list[Series]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    width: int = WIDTH
    height: int = HEIGHT
    points: int = 0

    @property
    def plot(self) -> dict:
        return {"left": LEFT, "right": self.width - RIGHT, "top": TOP, "bottom": self.height - BOTTOM}


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values spanning [lo, hi]."""
    span = hi - lo
    raw = span / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, v = [], first
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 12))
        v += step
    return ticks


def _label(value: float, step: float) -> str:
    """``value`` with as many decimals as the tick step needs (0.025 → 3, 0.5 → 1, 20 → 0)."""
    if step <= 0:
        return f"{value:.4g}"
    exponent = math.floor(math.log10(step))
    mantissa = step / 10 ** exponent
    places = max(0, -exponent + (0 if float(round(mantissa, 6)).is_integer() else 1))
    return f"{value:.{min(places, 8)}f}"


def line_chart(series: list[tuple[str, str, list[tuple[float, float | None]]]], *, width: int = WIDTH,
               height: int = HEIGHT) -> Chart:
    """A chart of ``(name, css class, [(x, y), …])`` series (points whose y is None are left out). Each series
    is a path through its points plus a dot per point (with a tooltip), so a single point still shows."""
    clean = [(name, css, [(float(x), float(y)) for x, y in pts if y is not None and math.isfinite(y)])
             for name, css, pts in series]
    xs = [x for _, _, pts in clean for x, _ in pts]
    ys = [y for _, _, pts in clean for _, y in pts]
    if not xs:
        return Chart([Series(name, css) for name, css, _ in clean], [], [], width, height, 0)
    x_lo, x_hi = min(xs), max(xs)
    if x_hi - x_lo < 1:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    y_lo, y_hi = min(ys), max(ys)
    pad = (y_hi - y_lo) * 0.08 or max(abs(y_hi) * 0.01, 1e-3)
    y_lo, y_hi = y_lo - pad, y_hi + pad
    left, right, top, bottom = LEFT, width - RIGHT, TOP, height - BOTTOM

    def px(x: float) -> float:
        return round(left + (x - x_lo) / (x_hi - x_lo) * (right - left), 1)

    def py(y: float) -> float:
        return round(bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top), 1)

    drawn = []
    for name, css, pts in clean:
        s = Series(name, css)
        s.path = " ".join(f"{'M' if i == 0 else 'L'}{px(x)} {py(y)}" for i, (x, y) in enumerate(pts))
        s.dots = [(px(x), py(y), f"{name}, epoch {x:g}: {y:.4g}") for x, y in pts]
        drawn.append(s)
    y_ticks = _nice_ticks(y_lo, y_hi)
    y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else (y_hi - y_lo)
    x_ticks = [t for t in _nice_ticks(x_lo, x_hi, 5) if float(t).is_integer()] or [x_lo]
    return Chart(drawn, [(px(t), f"{t:g}") for t in x_ticks], [(py(t), _label(t, y_step)) for t in y_ticks],
                 width, height, len(xs))


def training_charts(history: list[dict]) -> dict[str, Chart]:
    """The run page's curves: training loss; validation SSIM and PSNR beside the blurred input's."""
    def pts(key):
        return [(e["epoch"], e.get(key)) for e in history]
    return {"loss": line_chart([("loss", "series-a", pts("loss"))]),
            "ssim": line_chart([("val SSIM", "series-a", pts("val_ssim")),
                                ("input SSIM", "series-base", pts("input_ssim"))]),
            "psnr": line_chart([("val PSNR", "series-a", pts("val_psnr")),
                                ("input PSNR", "series-base", pts("input_psnr"))])}
