"""What a hub ran before a candidate came: recorded before, restored after.

The snapshot is also saved on the hub (``<staging root>/snapshot.json``) so that
`hil rollback HUB` can restore it from another process, and so that a second
deployment refuses to start over a kept one.

Everything read back from a hub is untrusted input: the file goes through a strict
model (run id and component grammar, semantic versions, no unknown fields, the
harness's own staging root) before any of it becomes part of a command, and the
paths that destructive commands touch are built from the harness's constants
(``staging_path``), never taken from the file.

The staging root is a root-owned 0700 folder the harness creates and verifies
(owner, mode, not a symlink, no parent others may swap) before each use; files go
there over SFTP as root (``FileTransfer.put(..., sudo=True)``).
"""

from __future__ import annotations

import json
import re
import stat
import tempfile
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hil.deploy.semver import Version, VersionError
from hil.drivers.base import Shell
from hil.drivers.greengrass import COMPONENT_NAME_RE, Component
from hil.errors import InfrastructureError, UserError

STAGING_ROOT = "/var/lib/hil/staging"
"""On the hub: root-owned, mode 0700, created and checked by the harness (``prepare_staging``)."""
SNAPSHOT_FILE = "snapshot.json"
MAX_SNAPSHOT_BYTES = 1 << 20
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")
DEVICE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
"""The inventory's device name grammar."""


class FileTransfer(Protocol):
    """File copy to and from a device (SFTP on a real hub; as root with ``sudo``)."""

    def put(self, local: Path, remote: str, *, sudo: bool = False) -> None: ...

    def get(self, remote: str, local: Path, *, sudo: bool = False) -> None: ...


class PendingDeployment(UserError):
    """The hub still carries a kept candidate; it must be rolled back first."""


class NothingToRestore(UserError):
    """No snapshot in memory nor on the hub."""


class UnsafeSnapshot(InfrastructureError):
    """The snapshot saved on the hub is not one the harness wrote (tampered, corrupt, or another
    hub's): refused before any of it is used; the hub needs a person."""


class UnsafeStaging(InfrastructureError):
    """The staging folder on the hub is not the root-owned 0700 folder the harness made."""


def component_set(components: list[Component]) -> dict[str, str]:
    """Name -> version of everything that was deployed (built-in services left out)."""
    return {c.name: c.version for c in components if not c.builtin}


def check_component_name(name: str) -> str:
    """A Greengrass component name that is also safe as one path component (no '.', '..', '-x')."""
    if not COMPONENT_NAME_RE.match(name):
        raise ValueError(f"{name!r} is not a component name (1-128 of letters, digits, '-', '_', '.', "
                         "starting with a letter or digit)")
    return name


def check_version(version: str) -> str:
    try:
        Version.parse(version)
    except VersionError as exc:
        raise ValueError(f"{version!r} is not a semantic version: {exc}") from None
    return version


def staging_path(root: str, *parts: str) -> str:
    """``root/part/...`` where every part is one plain path component: the only way the paths of
    destructive commands (rm -rf, cp -a) are built."""
    for part in parts:
        if not part or "/" in part or "\0" in part or part in (".", ".."):
            raise ValueError(f"refusing path component {part!r} under {root}")
    return str(PurePosixPath(root, *parts))


class Snapshot(BaseModel):
    """A hub's component set before a candidate, and the candidate put on top of it."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    device: str = Field(pattern=DEVICE_RE.pattern)
    run_id: str = Field(pattern=RUN_ID_RE.pattern)
    taken: str
    """UTC ISO-8601 time of the snapshot."""
    components: dict[str, str]
    candidate: dict[str, str] = Field(default_factory=dict)
    """The candidate's components (name -> version) deployed on top of this snapshot."""
    staging_root: str = STAGING_ROOT
    """Written for people reading the file; a reader accepts only its own root."""

    @field_validator("taken")
    @classmethod
    def _iso_time(cls, v: str) -> str:
        datetime.fromisoformat(v)  # ValueError -> a validation error naming the field
        return v

    @field_validator("components", "candidate")
    @classmethod
    def _component_set(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > 1000:
            raise ValueError("more than 1000 components")
        for name, version in v.items():
            check_component_name(name)
            check_version(version)
        return v

    @property
    def staging(self) -> str:
        return staging_path(self.staging_root, self.run_id)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str, *, device: str | None = None,
                  staging_root: str = STAGING_ROOT) -> Snapshot:
        """Parse a saved snapshot; UnsafeSnapshot (naming ``source`` and the field) for anything
        the harness would not have written, another device's included."""
        if len(text) > MAX_SNAPSHOT_BYTES:
            raise UnsafeSnapshot(f"{source}: {len(text)} bytes is too large to be a snapshot")
        try:
            doc: Any = json.loads(text)
            snap = cls.model_validate(doc)
        except json.JSONDecodeError as exc:
            raise UnsafeSnapshot(f"{source}: not JSON ({exc.msg} at line {exc.lineno}); not a snapshot "
                                 "written by hil deploy") from None
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            raise UnsafeSnapshot(f"{source}: field {where}: {msg.removeprefix('Value error, ')}; "
                                 "refusing to use it (not a snapshot written by hil deploy)") from None
        if snap.staging_root != staging_root:
            raise UnsafeSnapshot(f"{source}: field staging_root: {snap.staging_root!r} is not the "
                                 f"harness's staging folder {staging_root}; refusing to use it")
        if device is not None and snap.device != device:
            raise UnsafeSnapshot(f"{source}: field device: the snapshot is {snap.device!r}'s, this is "
                                 f"{device}; refusing to restore another hub's component set")
        return snap


def saved_snapshot_path(staging_root: str = STAGING_ROOT) -> str:
    return staging_path(staging_root, SNAPSHOT_FILE)


def read_saved(shell: Shell, staging_root: str = STAGING_ROOT) -> Snapshot | None:
    """The snapshot a kept deployment left on the hub, or None (UnsafeSnapshot if it is not one)."""
    path = saved_snapshot_path(staging_root)
    # head -c: a huge planted file must not fill the harness's memory
    res = shell.run(["head", "-c", str(MAX_SNAPSHOT_BYTES + 1), "--", path], sudo=True)
    if res.exit_status != 0:
        if "No such file" in res.stderr:
            return None
        res.check()
    return Snapshot.from_json(res.stdout, f"{shell.device}:{path}", device=shell.device,
                              staging_root=staging_root)


# Creates the staging root if missing (mode 0700; existing folders keep their modes), then
# prints owner, raw mode (hex, type bits included) and name of every folder from it up to /,
# for the checks in prepare_staging. Runs as root.
_PREPARE = r"""
set -e
umask 022
mkdir -p -- "$(dirname -- "$1")"
[ -e "$1" ] || [ -L "$1" ] || mkdir -m 0700 -- "$1"
p="$1"
while :; do
  stat -c '%u %f %n' -- "$p"
  [ "$p" = / ] && break
  p=$(dirname -- "$p")
done
"""


def prepare_staging(shell: Shell, staging_root: str = STAGING_ROOT) -> None:
    """Create the staging root (root-owned, 0700) and verify it before use: it and every folder
    above it must be root's, not a symlink, and not writable by others (unless sticky, like /tmp);
    UnsafeStaging otherwise - nothing is written into a folder someone else controls."""
    if not staging_root.startswith("/") or ".." in PurePosixPath(staging_root).parts:
        raise ValueError(f"staging root must be an absolute path without '..': {staging_root!r}")
    res = shell.run(["sh", "-c", _PREPARE, "hil-staging", staging_root], sudo=True).check()
    lines = [ln.split(" ", 2) for ln in res.stdout.splitlines() if ln.strip()]
    if not lines:
        raise UnsafeStaging(f"{shell.device}: {staging_root}: could not be inspected")
    for i, parts in enumerate(lines):
        try:
            uid, raw, name = parts
            full = int(raw, 16)
        except ValueError:
            raise UnsafeStaging(f"{shell.device}: unexpected stat output {' '.join(parts)!r}") from None
        mode = stat.S_IMODE(full)
        if not stat.S_ISDIR(full):
            kind = "symbolic link" if stat.S_ISLNK(full) else "file"
            raise UnsafeStaging(f"{shell.device}: {name} is a {kind}, not a folder: refusing to stage "
                                f"files under it (remove it; the harness recreates {staging_root})")
        if uid != "0":
            raise UnsafeStaging(f"{shell.device}: {name} belongs to uid {uid}, not root: refusing to "
                                "stage files where another user can swap them")
        if i == 0 and mode & 0o777 != 0o700:
            raise UnsafeStaging(f"{shell.device}: {name} has mode {mode:o}, not 700: refusing to stage "
                                f"files there (chmod 700 {name})")
        if mode & 0o022 and not mode & 0o1000:
            raise UnsafeStaging(f"{shell.device}: {name} (mode {mode:o}) is writable by others: refusing "
                                f"to stage files under it")


def save(shell: Shell, files: FileTransfer, snap: Snapshot) -> None:
    with tempfile.TemporaryDirectory(prefix="hil-snapshot-") as tmp:
        local = Path(tmp) / SNAPSHOT_FILE
        local.write_text(snap.to_json())
        prepare_staging(shell, snap.staging_root)
        files.put(local, saved_snapshot_path(snap.staging_root), sudo=True)


def forget(shell: Shell, staging_root: str = STAGING_ROOT) -> None:
    shell.run(["rm", "-f", "--", saved_snapshot_path(staging_root)], sudo=True).check()
