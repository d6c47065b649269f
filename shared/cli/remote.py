"""``sharpen submit/status/metrics/results --server URL [--token T]``: the same commands over the JSON API,
for a machine that has no database and no storage. Standard library only (urllib); uploads are streamed
from disk with a precomputed Content-Length, downloads are streamed to disk."""
from __future__ import annotations

import json
import mimetypes
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterator

import click
from tqdm import tqdm

CHUNK = 1 << 20


class Client:
    def __init__(self, server: str, token: str | None = None, timeout: float = 60):
        self.base = server.rstrip("/") + "/api/v1"
        self.token = token
        self.timeout = timeout

    def _open(self, method: str, path: str, data=None, headers: dict | None = None):
        headers = dict(headers or {}, Accept="application/json")
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error") or exc.reason
            except ValueError:
                message = exc.reason
            raise click.ClickException(f"{self.base}{path}: {exc.code} {message}") from None
        except urllib.error.URLError as exc:
            raise click.ClickException(f"cannot reach {self.base}: {exc.reason}") from None

    def get(self, path: str) -> dict:
        with self._open("GET", path) as r:
            return json.load(r)

    def post(self, path: str, data=None, headers: dict | None = None) -> dict:
        with self._open("POST", path, data=data if data is not None else b"", headers=headers) as r:
            return json.load(r)

    def submit(self, files: list[tuple[str, Path]], references: list[tuple[str, Path]], fields: dict) -> dict:
        boundary = uuid.uuid4().hex
        parts: list[tuple[bytes, Path | None]] = []
        for key, value in fields.items():
            if value is not None:
                parts.append((f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'
                              .encode(), None))
        for field, items in (("files", files), ("references", references)):
            for name, path in items:
                kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
                quoted = name.replace('"', "%22").replace("\r", "").replace("\n", "")
                head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{quoted}"\r\n'
                        f"Content-Type: {kind}\r\n\r\n").encode()
                parts.append((head, path))
        tail = f"--{boundary}--\r\n".encode()
        length = sum(len(h) + (p.stat().st_size + 2 if p else 0) for h, p in parts) + len(tail)

        def body() -> Iterator[bytes]:
            for head, path in parts:
                yield head
                if path is not None:
                    with open(path, "rb") as f:
                        while chunk := f.read(CHUNK):
                            yield chunk
                    yield b"\r\n"
            yield tail

        return self.post("/batches", data=body(), headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(length)})

    def all_metrics(self, batch_id: int) -> dict:
        """Every page of a batch's metrics, joined: the shape ``sharpen metrics --json`` prints."""
        data = self.get(f"/batches/{batch_id}/metrics?page=1")
        images = data["images"]
        for page in range(2, data["page"]["pages"] + 1):
            images += self.get(f"/batches/{batch_id}/metrics?page={page}")["images"]
        return {"batch": data["batch"], "images": images}

    def download(self, batch_id: int, dest: Path) -> None:
        with self._open("GET", f"/batches/{batch_id}/download") as r, open(dest, "wb") as out:
            shutil.copyfileobj(r, out, CHUNK)


def wait_remote(client: Client, batch_id: int, timeout: float | None = None) -> dict:
    t0 = time.time()
    batch = client.get(f"/batches/{batch_id}")
    with tqdm(total=batch["total"], desc=f"batch {batch_id}", unit="img") as bar:
        while True:
            batch = client.get(f"/batches/{batch_id}")
            bar.n = batch["ended"]
            bar.set_postfix(failed=batch["failed_count"])
            bar.refresh()
            if batch["final"]:
                return batch
            if timeout and time.time() - t0 > timeout:
                raise click.ClickException(f"batch {batch_id} not done after {timeout:g} s")
            time.sleep(0.5)


def extract_results(zip_path: Path, out: Path) -> int:
    """Unpack the outputs zip into ``out``, file names only (no folders, nothing outside ``out``)."""
    n = 0
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            name = PurePosixPath(info.filename.replace("\\", "/")).name
            if info.is_dir() or not name or name in (".", ".."):
                continue
            with zf.open(info) as src, open(out / name, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            n += 1
    return n


def results_remote(client: Client, batch_id: int, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "outputs.zip"
        client.download(batch_id, path)
        return extract_results(path, out)
