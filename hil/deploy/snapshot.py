"""What a hub ran before a candidate came: recorded before, restored after.

The snapshot is also saved on the hub (``<staging root>/snapshot.json``) so that
`hil rollback HUB` can restore it from another process, and so that a second
deployment refuses to start over a kept one.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hil.drivers.base import Shell
from hil.drivers.greengrass import Component
from hil.errors import ParseError, UserError

STAGING_ROOT = "/var/tmp/hil-staging"  # noqa: S108 - on the hub, created by the harness user
SNAPSHOT_FILE = "snapshot.json"
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")


class FileTransfer(Protocol):
    """File copy to and from a device (SFTP on a real hub)."""

    def put(self, local: Path, remote: str) -> None: ...

    def get(self, remote: str, local: Path) -> None: ...


class PendingDeployment(UserError):
    """The hub still carries a kept candidate; it must be rolled back first."""


class NothingToRestore(UserError):
    """No snapshot in memory nor on the hub."""


def component_set(components: list[Component]) -> dict[str, str]:
    """Name -> version of everything that was deployed (built-in services left out)."""
    return {c.name: c.version for c in components if not c.builtin}


@dataclass(frozen=True)
class Snapshot:
    device: str
    run_id: str
    taken: str
    """UTC ISO-8601 time of the snapshot."""
    components: dict[str, str]
    candidate: dict[str, str] = field(default_factory=dict)
    """The candidate's components (name -> version) deployed on top of this snapshot."""
    staging_root: str = STAGING_ROOT

    @property
    def staging(self) -> str:
        return f"{self.staging_root}/{self.run_id}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> Snapshot:
        try:
            doc: Any = json.loads(text)
            snap = cls(device=str(doc["device"]), run_id=str(doc["run_id"]), taken=str(doc["taken"]),
                       components={str(k): str(v) for k, v in doc["components"].items()},
                       candidate={str(k): str(v) for k, v in doc.get("candidate", {}).items()},
                       staging_root=str(doc.get("staging_root", STAGING_ROOT)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ParseError(f"{source}: not a snapshot written by hil deploy ({exc!r})") from None
        if not RUN_ID_RE.match(snap.run_id):
            raise ParseError(f"{source}: run id {snap.run_id!r} is not valid")
        return snap


def saved_snapshot_path(staging_root: str = STAGING_ROOT) -> str:
    return f"{staging_root}/{SNAPSHOT_FILE}"


def read_saved(shell: Shell, staging_root: str = STAGING_ROOT) -> Snapshot | None:
    """The snapshot a kept deployment left on the hub, or None."""
    path = saved_snapshot_path(staging_root)
    res = shell.run(["cat", path], sudo=True)
    if res.exit_status != 0:
        if "No such file" in res.stderr:
            return None
        res.check()
    return Snapshot.from_json(res.stdout, f"{shell.device}:{path}")


def save(shell: Shell, files: FileTransfer, snap: Snapshot) -> None:
    with tempfile.TemporaryDirectory(prefix="hil-snapshot-") as tmp:
        local = Path(tmp) / SNAPSHOT_FILE
        local.write_text(snap.to_json())
        shell.run(["mkdir", "-p", snap.staging_root]).check()
        files.put(local, saved_snapshot_path(snap.staging_root))


def forget(shell: Shell, staging_root: str = STAGING_ROOT) -> None:
    shell.run(["rm", "-f", saved_snapshot_path(staging_root)], sudo=True).check()
