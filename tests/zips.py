"""Hostile and ordinary zip files for the upload tests."""
from __future__ import annotations

import io
import stat
import zipfile


def zip_bytes(entries: dict[str, bytes], *, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def zip_slip() -> bytes:
    return zip_bytes({"ok.png": b"x", "../../etc/evil.png": b"x"})


def zip_absolute() -> bytes:
    return zip_bytes({"/etc/evil.png": b"x"})


def zip_symlink() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("link.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def zip_nested() -> bytes:
    return zip_bytes({"inner.zip": zip_bytes({"a.png": b"x"})})


def zip_bomb(megabytes: int = 64) -> bytes:
    """One entry of zeros that inflates about 1000 times."""
    return zip_bytes({"zeros.png": bytes(megabytes << 20)})
