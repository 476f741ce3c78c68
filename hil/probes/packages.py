"""What software a hub and a container image carry: Debian packages and os-release (OWASP IoT I5).

The hub's packages come from ``dpkg-query`` over the hub's shell; an image's from its
dpkg database (``/var/lib/dpkg/status``, and ``status.d/`` as distroless images keep
it) read out of a created (never started) container through the Docker SDK on the
hub's engine, so nothing of the image runs. Everything read back is untrusted:
lines that do not parse are skipped and counted, and reads are capped.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hil.drivers.base import Shell
from hil.errors import ProductError
from hil.software.sbom import OsRelease, Package

if TYPE_CHECKING:
    import docker

DPKG_QUERY_FORMAT = "${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\t" \
                    "${db:Status-Abbrev}\n"
DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_STATUS_D = "/var/lib/dpkg/status.d"
"""Distroless images record each package in a file of its own here, without a status file."""
OS_RELEASE_PATHS = ("/etc/os-release", "/usr/lib/os-release")
MAX_STATUS_BYTES = 64 * 1024 * 1024
MAX_OS_RELEASE_BYTES = 64 * 1024
NOT_INSTALLED = ("n", "c")
"""dpkg status letters of a package that is not on disk: not-installed, config-files only."""


@dataclass
class PackageInventory:
    """The packages of one subject (a hub or an image), with what could not be read."""

    subject: str
    os_release: OsRelease
    packages: list[Package] = field(default_factory=list)
    package_db: bool = True
    """False: no dpkg database (e.g. a static busybox image)."""
    skipped_lines: int = 0
    image_digest: str = ""


def parse_os_release(text: str) -> OsRelease:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().isidentifier():
            values[key.strip()] = value.strip().strip('"').strip("'")
    return OsRelease(id=values.get("ID", "").lower(), version_id=values.get("VERSION_ID", ""),
                     pretty_name=values.get("PRETTY_NAME", ""),
                     id_like=tuple(values.get("ID_LIKE", "").lower().split()))


def parse_dpkg_query(text: str) -> tuple[list[Package], int]:
    """Lines of ``DPKG_QUERY_FORMAT`` -> installed packages, and how many lines did not parse."""
    out: list[Package] = []
    bad = 0
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 6 or not parts[0] or not parts[1]:
            bad += 1 if line.strip() else 0
            continue
        name, version, arch, source, source_version, status = parts
        if len(status) >= 2 and status[1] in NOT_INSTALLED:
            continue
        out.append(Package(name=name, version=version, architecture=arch, source=source,
                           source_version=source_version))
    return out, bad


def parse_dpkg_status(text: str) -> tuple[list[Package], int]:
    """/var/lib/dpkg/status (deb822 stanzas) -> installed packages, and unusable stanzas."""
    out: list[Package] = []
    bad = 0
    for stanza in _stanzas(text):
        name, version = stanza.get("package", ""), stanza.get("version", "")
        status = stanza.get("status", "").split()
        if not name or not version:
            bad += 1
            continue
        if len(status) == 3 and status[2] in ("not-installed", "config-files"):
            continue
        source, _, rest = stanza.get("source", "").partition(" ")
        source_version = rest.strip().strip("()") if rest else ""
        out.append(Package(name=name, version=version, architecture=stanza.get("architecture", ""),
                           source=source, source_version=source_version))
    return out, bad


def _stanzas(text: str) -> Iterator[dict[str, str]]:
    current: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                yield current
            current, key = {}, ""
            continue
        if line[0] in " \t":
            continue  # a continuation line (descriptions, conffiles): nothing we read
        k, sep, v = line.partition(":")
        if sep:
            key = k.strip().lower()
            current[key] = v.strip()
    if current:
        yield current


# -- a hub -----------------------------------------------------------------------------------------

def hub_packages(shell: Shell, *, timeout: float) -> PackageInventory:
    """The hub's installed Debian packages and its os-release."""
    rel = shell.run(["cat", *OS_RELEASE_PATHS], timeout=timeout)
    os_release = parse_os_release(rel.stdout[:MAX_OS_RELEASE_BYTES])
    got = shell.run(["dpkg-query", "-W", "-f", DPKG_QUERY_FORMAT], timeout=timeout)
    if got.exit_status == 127:
        return PackageInventory(shell.device, os_release, package_db=False)
    got.check()
    packages, bad = parse_dpkg_query(got.stdout)
    return PackageInventory(shell.device, os_release, packages, skipped_lines=bad)


# -- an image --------------------------------------------------------------------------------------

def image_packages(client: docker.DockerClient, ref: str) -> PackageInventory:
    """The Debian packages and os-release inside image ``ref`` on the hub's engine.

    A container is created from the image (not started) and removed again; its files are
    read with the engine's archive API. An image the engine does not have is a product
    problem (the candidate's image is missing), raised as ``ProductError``.
    """
    import docker.errors

    try:
        image = client.images.get(ref)
    except docker.errors.ImageNotFound:
        raise ProductError(f"image {ref} is not on the hub's engine (was it pulled?)") from None
    digests = [d.split("@", 1)[1] for d in image.attrs.get("RepoDigests") or [] if "@" in d]
    container = client.containers.create(image.id, command=["/nonexistent"], entrypoint=[],
                                         network_disabled=True, labels={"hil.sbom": "1"})
    try:
        os_text = ""
        for path in OS_RELEASE_PATHS:
            os_text = _read_file(container, path, MAX_OS_RELEASE_BYTES)
            if os_text:
                break
        status = _read_file(container, DPKG_STATUS, MAX_STATUS_BYTES)
        status_d = _read_tree(container, DPKG_STATUS_D, MAX_STATUS_BYTES)
    finally:
        container.remove(force=True)
    text = "\n\n".join([status, *status_d])
    inv = PackageInventory(ref, parse_os_release(os_text), package_db=bool(text.strip()),
                           image_digest=digests[0] if digests else str(image.id))
    if text.strip():
        inv.packages, inv.skipped_lines = parse_dpkg_status(text)
    return inv


def _archive(container: Any, path: str, limit: int) -> tarfile.TarFile | None:
    import docker.errors

    try:
        stream, _stat = container.get_archive(path)
    except docker.errors.NotFound:
        return None
    buf = io.BytesIO()
    for chunk in stream:
        buf.write(chunk)
        if buf.tell() > limit + 64 * 1024:
            raise ProductError(f"{path} in the image is larger than {limit} bytes")
    buf.seek(0)
    return tarfile.open(fileobj=buf, mode="r:")


def _read_tree(container: Any, path: str, limit: int) -> list[str]:
    """The regular files of a folder in a container, as text (none if the folder is absent)."""
    tar = _archive(container, path, limit)
    if tar is None:
        return []
    out = []
    with tar:
        for member in tar:
            f = tar.extractfile(member) if member.isfile() else None
            if f is not None:
                out.append(f.read(limit).decode("utf-8", errors="replace"))
    return out


def _read_file(container: Any, path: str, limit: int, hops: int = 4) -> str:
    """One regular file out of a container ('' if absent); symlinks are followed a few hops."""
    tar = _archive(container, path, limit)
    if tar is None:
        return ""
    with tar:
        member = next(iter(tar), None)
        if member is None:
            return ""
        if member.issym():
            # /etc/os-release -> ../usr/lib/os-release: resolved inside the image, never on this host
            target = posixpath.normpath(posixpath.join(posixpath.dirname(path), member.linkname))
            return _read_file(container, target, limit, hops - 1) if hops > 0 and target != path else ""
        if not member.isfile():
            return ""
        f = tar.extractfile(member)
        return f.read(limit).decode("utf-8", errors="replace") if f else ""
