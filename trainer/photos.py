"""The photo set: free photographs that ship inside Python and Debian packages, rebuilt byte for byte.

``photo_manifest.json`` (next to this file) lists every photo: where it comes from (a Python package's data
file, or a file inside a pinned Debian package, optionally a member of a Qt ``.rcc`` or Enlightenment ``.edj``
container inside it), the sha256 of the extracted original, its licence, content tags, an optional ``downscale``
factor (the WebP photos of gcompris are visibly smoothed: halved first), its split, and the sha256 of the PNG
written from it at the default ``max_side``.

``collect_photos(out)`` downloads the pinned ``.deb`` files (``apt-get download PKG=VERSION``) into a cache,
extracts and checks every original, and writes PNGs (area-downscaled so the longer side is at most ``max_side``)
in DIV2K layout plus a held-out folder:

* ``train`` -> ``DIV2K_train_HR/``  (training)
* ``tune``  -> ``DIV2K_valid_HR/``  (the trainer's per-epoch validation: hyperparameters, checkpoints)
* ``valid`` -> ``holdout_HR/``      (held-out evaluation only, e.g. bench/quality.py; never trained or tuned on)

Splits are made by source ``group`` (a package or one sub-collection of it), so near-duplicates never straddle
two splits. Debian's ``lomiri-wallpapers*`` and ``mate-backgrounds`` are never used: they are reserved for
independent evaluation.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import tarfile
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np

from shared.evaluation import fit_within
from shared.imageio import decode_image, to_model_input
from trainer.containers import eet_entries, jpeg_streams, rcc_files

MANIFEST = Path(__file__).with_name("photo_manifest.json")
SPLIT_DIRS = {"train": "DIV2K_train_HR", "tune": "DIV2K_valid_HR", "valid": "holdout_HR"}
FORBIDDEN_PACKAGES = ("lomiri-wallpapers", "mate-backgrounds")
DEFAULT_MAX_SIDE = 1024
MIN_VALID = 40


class PhotoError(RuntimeError):
    """A photo that cannot be rebuilt as the manifest says (missing package version, checksum mismatch...)."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_manifest(path: Path = MANIFEST) -> list[dict]:
    return json.loads(Path(path).read_text())["photos"]


def check_manifest(photos: list[dict]) -> None:
    """Raise ValueError unless the manifest is well-formed and its splits are sound."""
    problems = []
    ids = Counter(p["id"] for p in photos)
    problems += [f"duplicate id {i}" for i, n in ids.items() if n > 1]
    for p in photos:
        missing = {"id", "source", "package", "path", "sha256", "out_sha256", "licence", "tags", "split",
                   "group"} - p.keys()
        if missing:
            problems.append(f"{p.get('id')}: missing {sorted(missing)}")
            continue
        if p["package"].startswith(FORBIDDEN_PACKAGES):
            problems.append(f"{p['id']}: {p['package']} is reserved for independent evaluation")
        if p["split"] not in SPLIT_DIRS:
            problems.append(f"{p['id']}: unknown split {p['split']}")
        if p["source"] not in ("python", "deb") or (p["source"] == "deb" and not p.get("version")):
            problems.append(f"{p['id']}: source must be 'python' or 'deb' (deb needs a pinned version)")
    problems += [f"the same photo twice ({h})" for h, n in Counter(p["sha256"] for p in photos).items() if n > 1]
    splits_of = defaultdict(set)
    for p in photos:
        splits_of[p["group"]].add(p["split"])
    problems += [f"source {g} straddles splits {sorted(s)}" for g, s in splits_of.items() if len(s) > 1]
    counts = Counter(p["split"] for p in photos)
    problems += [f"split {s} is empty" for s in SPLIT_DIRS if not counts[s]]
    if counts["valid"] < MIN_VALID:
        problems.append(f"only {counts['valid']} held-out photos ({MIN_VALID} needed)")
    if problems:
        raise ValueError("photo manifest: " + "; ".join(problems))


def package_file(package: str, rel: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PhotoError(f"python package {package} is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / rel


def fetch_deb(package: str, version: str, cache: Path) -> Path:
    """The ``.deb`` of exactly ``package=version``, downloaded into ``cache`` once."""
    folder = cache / "debs" / f"{package}_{version.replace(':', '%3a')}"
    debs = sorted(folder.glob("*.deb"))
    if debs:
        return debs[0]
    if shutil.which("apt-get") is None:
        raise PhotoError(f"apt-get is needed to download {package}={version} (or use only the Python photos)")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        done = subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=tmp, capture_output=True,
                              text=True)
        got = sorted(Path(tmp).glob("*.deb"))
        if done.returncode or not got:
            raise PhotoError(
                f"cannot download {package} version {version}, which the photo manifest pins: "
                f"{done.stderr.strip() or 'apt-get produced no file'}. Run `apt-get update`; if the archive "
                f"no longer carries that version, fetch {package}_{version} from snapshot.debian.org into {folder}")
        deb = folder / got[0].name
        got[0].replace(deb)
    return deb


def deb_files(package: str, version: str, paths: set[str], cache: Path) -> Path:
    """Extract ``paths`` (relative, no leading ``./``) from the pinned ``.deb`` into the cache; returns its root."""
    root = cache / "files" / f"{package}_{version.replace(':', '%3a')}"
    wanted = {p for p in paths if not (root / p).is_file()}
    if not wanted:
        return root
    deb = fetch_deb(package, version, cache)
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if name in wanted and member.isfile():
                dst = root / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                tmp = dst.with_name(dst.name + ".part")
                tmp.write_bytes(tar.extractfile(member).read())
                tmp.replace(dst)
                wanted.discard(name)
    if proc.wait():
        raise PhotoError(f"dpkg-deb could not read {deb}")
    if wanted:
        raise PhotoError(f"{package} {version} does not contain {sorted(wanted)}")
    return root


def original(photo: dict, file: Path) -> bytes:
    """The photo's original bytes from ``file``, unpacking a container member when there is one."""
    data = file.read_bytes()
    member = photo.get("member")
    if member:
        if file.suffix == ".rcc":
            data = rcc_files(data).get(member)
        elif file.suffix in (".edj", ".eet"):
            streams = jpeg_streams(eet_entries(data, {member}).get(member, b""))
            data = max(streams, key=len) if streams else None
        else:
            raise PhotoError(f"{photo['id']}: no reader for container {file.name}")
        if data is None:
            raise PhotoError(f"{photo['id']}: {member} not found in {file.name}")
    return data


def render_png(photo: dict, data: bytes, max_side: int = DEFAULT_MAX_SIDE) -> bytes:
    """PNG bytes of the photo: 8-bit RGB, halved etc. by its ``downscale``, then fit within ``max_side`` (area)."""
    rgb = to_model_input(decode_image(data, photo["id"]))[0]
    factor = photo.get("downscale", 1)
    if factor != 1:
        h, w = rgb.shape[:2]
        rgb = cv2.resize(rgb, (round(w / factor), round(h / factor)), interpolation=cv2.INTER_AREA)
    u8 = np.rint(np.clip(fit_within(rgb, max_side), 0, 1) * 255).astype(np.uint8)
    ok, png = cv2.imencode(".png", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR))
    if not ok:
        raise PhotoError(f"{photo['id']}: PNG encoding failed")
    return png.tobytes()


def _selected(photo: dict, only) -> bool:
    return only is None or bool({photo["id"], photo["package"], photo["source"], photo["group"]} & set(only))


def collect_photos(out: Path, max_side: int = DEFAULT_MAX_SIDE, cache: Path | None = None, only=None,
                   manifest: Path = MANIFEST, log=print) -> dict[str, list[str]]:
    """Rebuild the photo set into ``out``; returns {split: [file names]}.

    ``only``: ids, package names, groups or source kinds ("python", "deb") to restrict to. Photos already
    written with the manifest's checksum are skipped. Every original is checked against its sha256, and at the
    default ``max_side`` every written PNG too.
    """
    out = Path(out)
    cache = Path(cache) if cache else out.parent / ".cache"
    photos = [p for p in load_manifest(manifest) if _selected(p, only)]
    exact = max_side == DEFAULT_MAX_SIDE
    todo = defaultdict(list)  # (package, version) -> photos still to write
    if only is None:  # the full set is exactly the manifest: drop PNGs of photos it no longer lists
        ids = {p["id"] for p in photos}
        for stale in [f for d in SPLIT_DIRS.values() for f in (out / d).glob("*.png") if f.stem not in ids]:
            log(f"removing {stale} (not in the manifest)")
            stale.unlink()
    for p in photos:
        for split, folder in SPLIT_DIRS.items():  # a photo moved to another split leaves no stale copy
            stale = out / folder / f"{p['id']}.png"
            if split != p["split"] and stale.exists():
                stale.unlink()
        dst = out / SPLIT_DIRS[p["split"]] / f"{p['id']}.png"
        if exact and dst.is_file() and sha256(dst.read_bytes()) == p["out_sha256"]:
            continue
        todo[(p["package"], p.get("version") if p["source"] == "deb" else None)].append(p)
    for (package, version), group in todo.items():
        if version is None:
            installed = importlib.metadata.version(_dist_name(package))
            files = {p["id"]: package_file(package, p["path"]) for p in group}
        else:
            root = deb_files(package, version, {p["path"] for p in group}, cache)
            installed, files = version, {p["id"]: root / p["path"] for p in group}
        for p in group:
            data = original(p, files[p["id"]])
            if sha256(data) != p["sha256"]:
                raise PhotoError(f"{p['id']}: {package} {installed} {p['path']} {p.get('member') or ''} has "
                                 f"sha256 {sha256(data)}, the manifest expects {p['sha256']} "
                                 f"(recorded from version {p.get('version')})")
            png = render_png(p, data, max_side)
            if exact and sha256(png) != p["out_sha256"]:
                raise PhotoError(f"{p['id']}: the written PNG has sha256 {sha256(png)}, the manifest expects "
                                 f"{p['out_sha256']} (a different OpenCV/Pillow decodes or encodes differently)")
            dst = out / SPLIT_DIRS[p["split"]] / f"{p['id']}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + ".part")
            tmp.write_bytes(png)
            tmp.replace(dst)
        log(f"{package} {installed}: {len(group)} photos written")
    (out / "manifest.json").write_text(json.dumps({"max_side": max_side, "photos": photos}, indent=1) + "\n")
    split = {s: sorted(f"{p['id']}.png" for p in photos if p["split"] == s) for s in SPLIT_DIRS}
    log(", ".join(f"{len(v)} {k} ({SPLIT_DIRS[k]})" for k, v in split.items()) + f" photos in {out}")
    return split


def _dist_name(package: str) -> str:
    return {"skimage": "scikit-image", "sklearn": "scikit-learn"}.get(package, package)
