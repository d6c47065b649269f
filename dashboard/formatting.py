"""Jinja filters: numbers and durations as a person reads them; a dash where there is no value."""
from __future__ import annotations

DASH = "–"


def fixed(value, places: int = 4) -> str:
    return DASH if value is None else f"{value:.{places}f}"


def signed(value, places: int = 4) -> str:
    return DASH if value is None else f"{value:+.{places}f}"


def duration(seconds) -> str:
    if seconds is None:
        return DASH
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def ago(seconds) -> str:
    return DASH if seconds is None else ("just now" if seconds < 5 else f"{duration(seconds)} ago")


def gain_class(value) -> str:
    """CSS class for a gain: better, worse or neither."""
    if value is None:
        return ""
    return "better" if value > 0 else ("worse" if value < 0 else "")


FILTERS = {"fixed": fixed, "signed": signed, "duration": duration, "ago": ago, "gain_class": gain_class}
