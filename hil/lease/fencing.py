"""Fencing tokens on the hub: a holder that lost its lease cannot deploy over a new one.

A lease's ``fencing_token`` grows with every take of a device. Before the first
destructive step (a deployment, a restore) the holder calls ``fence_hub(shell, lease)``,
which writes the token with ``write_fence(shell, token)``: the hub
keeps the highest token it has seen in ``FENCE_PATH`` and refuses a lower one. Between
destructive steps ``check_fence(shell, token)`` re-reads it. A holder whose lease
expired while it was stalled (GC pause, network split) finds a higher token there and
stops with ``LeaseLost`` instead of overwriting the new holder's work.

Tokens never go backwards even when the local count is lost (a cleaner emptied the
lease folder, a database was rebuilt): the hub remembers the highest token it saw, and
``fence_hub`` takes max(our token, the hub's + 1) through ``Lease.raise_token_above``,
which itself refuses when the lease is no longer ours.
"""

from __future__ import annotations

from collections.abc import Callable

from hil.drivers.base import PowerOutlet, Shell
from hil.lease import Lease, LeaseLost
from hil.steps import step

FENCE_PATH = "/var/lib/hil/fence"
FENCE_STALE = 3
"""Exit status of the compare-and-set script when the hub holds a higher token."""

# Compare-and-set under flock, so two holders writing at once cannot both "win".
# $1 = fence file, $2 = our token. Prints the token the hub had before. What the file holds
# is untrusted: anything but 1-18 digits (the shell's arithmetic stops at 2^63) reads as 0,
# and the next fence repairs it.
_CAS = r"""
set -e
mkdir -p "$(dirname "$1")"
exec 9>>"$1.lock"
flock -w 10 9
cur=$(head -c 64 "$1" 2>/dev/null | tr -d '\n' || true)
case "$cur" in ''|*[!0-9]*) cur=0 ;; esac
[ ${#cur} -le 18 ] || cur=0
echo "$cur"
if [ "$cur" -gt "$2" ]; then exit 3; fi
if [ "$cur" -lt "$2" ]; then printf '%s\n' "$2" > "$1.tmp"; mv -f "$1.tmp" "$1"; fi
"""

_READ = r"""
cur=$(head -c 64 "$1" 2>/dev/null | tr -d '\n' || true)
case "$cur" in ''|*[!0-9]*) cur=0 ;; esac
[ ${#cur} -le 18 ] || cur=0
echo "$cur"
"""


def _stale(device: str, ours: int, theirs: int) -> LeaseLost:
    return LeaseLost(f"{device}: fencing token {theirs} on the hub is newer than ours ({ours}): "
                     "another holder took this hub after our lease expired; not touching it")


def read_fence(shell: Shell, *, path: str = FENCE_PATH, sudo: bool = True,
               timeout: float | None = None) -> int:
    """The highest token the hub has seen (0 when none was ever written)."""
    res = shell.run(["sh", "-c", _READ, "hil-fence", path], sudo=sudo, timeout=timeout).check()
    return int(res.stdout.strip() or 0)


def write_fence(shell: Shell, token: int, *, path: str = FENCE_PATH, sudo: bool = True,
                timeout: float | None = None) -> None:
    """Record ``token`` on the hub before destructive steps; LeaseLost if the hub has a newer one."""
    with step("fence", device=shell.device, token=token) as st:
        res = shell.run(["sh", "-c", _CAS, "hil-fence", path, str(token)], sudo=sudo, timeout=timeout)
        st.record(res)
        if res.exit_status == FENCE_STALE:
            raise _stale(shell.device, token, int(res.stdout.strip() or 0))
        res.check()


def check_fence(shell: Shell, token: int, *, path: str = FENCE_PATH, sudo: bool = True,
                timeout: float | None = None) -> None:
    """Raise LeaseLost when the hub has seen a token newer than ``token``."""
    with step("check fence", device=shell.device, token=token):
        theirs = read_fence(shell, path=path, sudo=sudo, timeout=timeout)
        if theirs > token:
            raise _stale(shell.device, token, theirs)


def fence_hub(shell: Shell, lease: Lease, *, path: str = FENCE_PATH, sudo: bool = True,
              timeout: float | None = None) -> int:
    """The first destructive step of ``lease`` on this hub: put our token there (above any token the
    hub has seen, so a lost local counter cannot make us refuse ourselves); returns the token."""
    if lease.lost:
        raise LeaseLost(f"{shell.device}: lease lost: {lease.lost_reason}")
    seen = read_fence(shell, path=path, sudo=sudo, timeout=timeout)
    token = lease.raise_token_above(seen) if seen >= lease.fencing_token else lease.fencing_token
    write_fence(shell, token, path=path, sudo=sudo, timeout=timeout)
    return token


def require_held(lease: Lease, device: str, what: str) -> None:
    """LeaseLost unless ``lease`` is still ours (the guard of actions that cannot ask the hub)."""
    if lease.lost:
        raise LeaseLost(f"{device}: lease lost: {lease.lost_reason}; not {what}")


class Fence:
    """The fencing of one lease on one hub, put in place by the constructor (``fence_hub``);
    calling it is the re-check before each destructive step (LeaseLost when the lease was lost
    or the hub saw a newer token)."""

    def __init__(self, shell: Shell, lease: Lease, *, timeout: float | None = None) -> None:
        self.shell = shell
        self.lease = lease
        self.timeout = timeout
        self.token = fence_hub(shell, lease, timeout=timeout)

    def __call__(self) -> None:
        require_held(self.lease, self.shell.device, "touching the hub")
        check_fence(self.shell, self.token, timeout=self.timeout)


class FencedOutlet:
    """A ``PowerOutlet`` that switches only while ``guard`` passes (a lost lease must not power a
    hub off under its new holder); reading the state is never fenced."""

    def __init__(self, outlet: PowerOutlet, guard: Callable[[], None]) -> None:
        self.outlet = outlet
        self.guard = guard

    def on(self) -> None:
        self.guard()
        self.outlet.on()

    def off(self) -> None:
        self.guard()
        self.outlet.off()

    def cycle(self, off_time: float = 2.0) -> None:
        self.guard()
        self.outlet.cycle(off_time)

    def status(self) -> bool:
        return self.outlet.status()
