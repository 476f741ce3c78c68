"""A reproducible registry image from a built one: the same files give the same digest.

``docker build`` stamps times into an image (file times in its layers, ``created`` in its
config), so an image built twice from the same inputs gets two digests, and a candidate
could not pin it (``image@sha256:...``) in a file checked into the repository. For the
images that candidates pin (the ML detector), the lab therefore takes the built image's
single layer, writes it again with every entry in name order, time 0, owner 0:0 and no
user names, compresses it with gzip without a time stamp, writes a config that holds only
what runs the image (no times, no build history), and pushes layer, config and manifest to
the lab registry itself over its HTTP API. The manifest's digest then depends on the
files' contents alone; the same Debian packages and wheels give the same digest anywhere.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import docker
import requests

from hil.errors import InfrastructureError

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
RUN_KEYS = ("Env", "Entrypoint", "Cmd", "WorkingDir", "User", "ExposedPorts", "StopSignal")
"""What of the built image's config is kept: how it runs, nothing about when it was built."""
PUSH_TIMEOUT = 300.0
CHUNK = 1 << 20


@dataclass(frozen=True)
class ReproducibleImage:
    folder: Path
    """layer.tar.gz, config.json, manifest.json"""
    digest: str
    """sha256:<hex> of the manifest: what a candidate pins."""

    @property
    def manifest(self) -> bytes:
        return (self.folder / "manifest.json").read_bytes()


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _normalize(src: IO[bytes], dst: IO[bytes]) -> None:
    with tarfile.open(fileobj=src, mode="r|") as tin:
        members: list[tuple[tarfile.TarInfo, bytes | None]] = []
        for m in tin:
            data = tin.extractfile(m).read() if m.isfile() else None  # type: ignore[union-attr]
            members.append((m, data))
    with tarfile.open(fileobj=dst, mode="w|", format=tarfile.PAX_FORMAT) as tout:
        for m, data in sorted(members, key=lambda md: md[0].name):
            m.mtime, m.uid, m.gid, m.uname, m.gname = 0, 0, 0, "", ""
            m.pax_headers = {}
            tout.addfile(m, None if data is None else _Bytes(data))


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        out, self.pos = self.data[self.pos:end], min(end, len(self.data))
        return out


def reproducible_image(client: docker.DockerClient, tag: str, cache: Path) -> ReproducibleImage:
    """The normalized form of the built image ``tag`` (one layer), kept in ``cache/<tag>-<this code>/``
    (the tag is a hash of the image's inputs; a change to this module makes a new form)."""
    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    folder = cache / f"{tag.replace('/', '_').replace(':', '_')}-{code}"
    if (folder / "manifest.json").is_file():
        return ReproducibleImage(folder, "sha256:" + hashlib.sha256((folder / "manifest.json").read_bytes())
                                 .hexdigest())
    image = client.images.get(tag)
    run_config = {k: v for k, v in (image.attrs.get("Config") or {}).items() if k in RUN_KEYS and v}
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        work = Path(tmp)
        saved = work / "saved.tar"
        with saved.open("wb") as f:
            for chunk in image.save(named=False):
                f.write(chunk)
        with tarfile.open(saved) as archive:
            index = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
            layers = index[0]["Layers"]
            if len(layers) != 1:
                raise InfrastructureError(f"{tag}: a reproducible image needs exactly one layer, it has "
                                          f"{len(layers)} (build it FROM scratch with one COPY)")
            raw = work / "layer.tar"
            with archive.extractfile(layers[0]) as src, raw.open("wb") as dst:  # type: ignore[union-attr]
                _normalize(src, dst)
        diff_id = _sha(raw)
        out = work / "out"
        out.mkdir()
        with raw.open("rb") as src, (out / "layer.tar.gz").open("wb") as dst, \
                gzip.GzipFile(filename="", mode="wb", fileobj=dst, mtime=0, compresslevel=6) as gz:
            shutil.copyfileobj(src, gz, CHUNK)
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": run_config,
                             "rootfs": {"type": "layers", "diff_ids": [diff_id]}},
                            sort_keys=True, separators=(",", ":")).encode()
        (out / "config.json").write_bytes(config)
        layer = out / "layer.tar.gz"
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "size": len(config),
                       "digest": "sha256:" + hashlib.sha256(config).hexdigest()},
            "layers": [{"mediaType": LAYER_TYPE, "size": layer.stat().st_size, "digest": _sha(layer)}],
        }, sort_keys=True, indent=3).encode()
        (out / "manifest.json").write_bytes(manifest)
        try:
            out.rename(folder)
        except OSError:  # another lab slot made the same form meanwhile: same files, keep theirs
            if not (folder / "manifest.json").is_file():
                raise
    return ReproducibleImage(folder, "sha256:" + hashlib.sha256(manifest).hexdigest())


def push(image: ReproducibleImage, base_url: str, repository: str, tag: str, *, ca: Path) -> str:
    """Push layer, config and manifest (tagged ``tag``) to the registry; returns the digest it reports."""
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the lab CA (the environment wins)
    session.verify = str(ca)
    manifest = json.loads(image.manifest)
    for blob, path in ((manifest["config"]["digest"], image.folder / "config.json"),
                       (manifest["layers"][0]["digest"], image.folder / "layer.tar.gz")):
        url = f"{base_url}/v2/{repository}/blobs/{blob}"
        if session.head(url, timeout=PUSH_TIMEOUT).status_code == 200:
            continue
        start = session.post(f"{base_url}/v2/{repository}/blobs/uploads/", timeout=PUSH_TIMEOUT)
        _ok(start, f"starting the upload of {blob}")
        location = start.headers["Location"]
        location = location if location.startswith("http") else base_url + location
        with path.open("rb") as body:
            done = session.put(location, params={"digest": blob}, data=body, timeout=PUSH_TIMEOUT,
                               headers={"Content-Type": "application/octet-stream"})
        _ok(done, f"uploading {blob}")
    put = session.put(f"{base_url}/v2/{repository}/manifests/{tag}", data=image.manifest,
                      headers={"Content-Type": MANIFEST_TYPE}, timeout=PUSH_TIMEOUT)
    _ok(put, f"putting the manifest of {repository}:{tag}")
    return str(put.headers.get("Docker-Content-Digest", ""))


def _ok(response: requests.Response, what: str) -> None:
    if response.status_code >= 300:
        raise InfrastructureError(f"lab registry: {what} failed: HTTP {response.status_code} "
                                  f"{response.text[:300]}")


def describe(image: ReproducibleImage) -> dict[str, Any]:
    return {"digest": image.digest, "folder": str(image.folder)}
