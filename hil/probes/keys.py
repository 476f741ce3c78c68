"""Private keys on a hub (OWASP IoT I7): where they are, in any size and format, and who may read them.

Two searches over the same roots, both run on the hub:
- text keys: every file, of any size and binary or not (``grep -a``), holding a PEM
  ``PRIVATE KEY`` armour (PKCS#1/#8, EC, encrypted, OpenSSH's format) or a PuTTY key,
  so a key inside a large backup archive or log is found too;
- DER keys: the first bytes of every small file, judged here: a DER SEQUENCE that spans
  the whole file and starts with the version INTEGER of a PKCS#1, PKCS#8 or SEC1 key
  (certificates start with a nested SEQUENCE instead, PKCS#12 with version 3).

The allowlist (devices.yaml ``expect.private_key_allowlist``) uses glob patterns where
``*`` stays within one folder and ``**`` crosses folders. Under the candidate's own
artifact folders (``artifact_roots``) a ``**`` pattern is never honoured: an inventory
entry such as ``/greengrass/v2/**`` must not exempt whatever a candidate ships.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from hil.drivers.base import CommandFailed, CommandResult, Shell
from hil.errors import ParseError

PEM_PRIVATE_KEY_RE = r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----|PuTTY-User-Key-File-[0-9]+:"

DEFAULT_KEY_ROOTS: tuple[str, ...] = (
    "/etc", "/home", "/root", "/opt", "/srv", "/greengrass", "/var", "/usr/local",
    "/tmp",  # noqa: S108 - a place on the device to search, not a temp file of ours
)
DEFAULT_PRUNE: tuple[str, ...] = ("/proc", "/sys", "/dev", "/run", "/var/lib/docker", "/var/lib/containerd")
"""Image layers under /var/lib/docker belong to the image scan, not to the host's key files."""

def artifact_roots(greengrass_root: str = "/greengrass/v2") -> tuple[str, ...]:
    """Where a Greengrass candidate's artifacts and working files live (expect.greengrass_root)."""
    root = greengrass_root.rstrip("/")
    return (f"{root}/packages/", f"{root}/work/")


ARTIFACT_ROOTS = artifact_roots()

DER_MIN_BYTES = 40
"""An Ed25519 PKCS#8 key is 48 bytes; nothing shorter is a key."""
DER_MAX_BYTES = 16 * 1024
"""An RSA-8192 PKCS#1 key is under 5 KB: larger DER files are not bare keys."""
DER_HEAD_BYTES = 16
DER_SCRIPT = 'stat -c "%s %n" -- "$@"; head -v -c 16 -- "$@" | od -An -v -tx1'
"""For a batch of files: their sizes, then their first 16 bytes (hex, with head's headers)."""

KeyFormat = Literal["text", "der"]


@dataclass(frozen=True)
class KeyFile:
    path: str
    mode: int
    owner: str
    group: str
    allowed: bool
    """Its path matches an allowlist pattern from devices.yaml (see ``path_allowed``)."""
    format: KeyFormat = "text"

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("mode_octal", "too_open")

    @property
    def mode_octal(self) -> str:
        return f"{self.mode:04o}"

    @property
    def too_open(self) -> bool:
        """Readable or writable by group or others (mode beyond 0600)."""
        return bool(self.mode & 0o077)


@dataclass(frozen=True)
class PrivateKeyScan:
    device: str
    roots: tuple[str, ...]
    allowlist: tuple[str, ...]
    keys: tuple[KeyFile, ...]

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("stray", "too_open")

    @property
    def stray(self) -> tuple[str, ...]:
        return tuple(k.path for k in self.keys if not k.allowed)

    @property
    def too_open(self) -> tuple[str, ...]:
        return tuple(k.path for k in self.keys if k.too_open)


# -- the allowlist ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _glob_re(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def path_allowed(path: str, allowlist: Iterable[str], artifacts: Sequence[str] = ARTIFACT_ROOTS) -> bool:
    """Glob match: ``*`` and ``?`` stay within one folder, ``**`` crosses folders. Under the
    candidate's artifact folders only patterns without ``**`` count (a file must be named,
    not a tree)."""
    in_artifacts = path.startswith(tuple(artifacts))
    return any(_glob_re(pat).match(path) for pat in allowlist if not (in_artifacts and "**" in pat))


# -- DER recognition (pure) -------------------------------------------------------------------

def der_private_key(head: bytes, size: int) -> bool:
    """Does a file of ``size`` bytes starting with ``head`` hold exactly one DER private key?"""
    if len(head) < 8 or head[0] != 0x30:
        return False
    if head[1] < 0x80:
        hdr, length = 2, head[1]
    elif head[1] == 0x81:
        hdr, length = 3, head[2]
    elif head[1] == 0x82:
        hdr, length = 4, int.from_bytes(head[2:4], "big")
    else:
        return False
    if hdr + length != size or head[hdr:hdr + 2] != b"\x02\x01":
        return False
    version, following = head[hdr + 2], head[hdr + 3]
    # PKCS#1 RSA: 0 then INTEGER; PKCS#8: 0/1 then AlgorithmIdentifier; SEC1 EC: 1 then OCTET STRING
    return (version, following) in {(0, 0x02), (0, 0x30), (1, 0x30), (1, 0x04)}


def parse_der_heads(text: str) -> dict[str, tuple[int, bytes]]:
    """DER_SCRIPT output -> {path: (size, first bytes)}."""
    sizes: dict[str, int] = {}
    hex_parts: list[str] = []
    for line in text.splitlines():
        if line[:1].isdigit():
            size, _, path = line.partition(" ")
            sizes[path] = int(size)
        elif line.strip():
            hex_parts.append(line)
    try:
        stream = bytes.fromhex("".join(hex_parts))
    except ValueError as exc:
        raise ParseError(f"od printed something that is not hex: {exc}") from None
    out: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while pos < len(stream):
        if stream.startswith(b"\n", pos):
            pos += 1
            continue
        if not stream.startswith(b"==> ", pos):
            raise ParseError(f"head output lost its file headers at byte {pos}")
        end = stream.find(b" <==\n", pos)
        if end < 0:
            raise ParseError("head output ends inside a file header")
        path = stream[pos + 4:end].decode(errors="replace")
        pos = end + 5
        n = min(DER_HEAD_BYTES, sizes.get(path, DER_HEAD_BYTES))
        out[path] = (sizes.get(path, -1), stream[pos:pos + n])
        pos += n
    return out


# -- the searches ------------------------------------------------------------------------------

def files_argv(roots: Sequence[str], prune: Sequence[str]) -> list[str]:
    """``find ROOTS ( -path P -o ... ) -prune -o -type f``: regular files, pruned folders left out."""
    prune_expr: list[str] = []
    for p in prune:
        prune_expr += (["-o"] if prune_expr else []) + ["-path", p]
    return ["find", *roots, "(", *prune_expr, ")", "-prune", "-o", "-type", "f"]


def find_argv(roots: Sequence[str], prune: Sequence[str]) -> list[str]:
    """Files of any size whose bytes hold a text private key (``grep -a``: binary files too)."""
    return [*files_argv(roots, prune), "-exec", "grep", "-l", "-a", "-E", "-e", PEM_PRIVATE_KEY_RE, "{}", "+"]


def der_argv(roots: Sequence[str], prune: Sequence[str]) -> list[str]:
    return [*files_argv(roots, prune), "-size", f"+{DER_MIN_BYTES - 1}c", "-size", f"-{DER_MAX_BYTES + 1}c",
            "-exec", "sh", "-c", DER_SCRIPT, "sh", "{}", "+"]


def harmless_stderr(line: str) -> bool:
    """find's "No such file" for a path this hub lacks, and sudo's warning about a bad file in
    sudoers.d (it skips that file and runs the command): neither makes a search fail."""
    return not line.strip() or "No such file or directory" in line or line.startswith("sudo: /etc/sudoers")


def _check_search(res: CommandResult, what: str) -> None:
    # find exits 1 for a missing root, grep 1 for "no match" in a batch: both are normal here
    other_errors = [ln for ln in res.stderr.splitlines() if not harmless_stderr(ln)]
    if res.exit_status not in (0, 1) or (res.exit_status == 1 and not res.stdout and other_errors):
        raise CommandFailed(f"searching {what} failed (exit {res.exit_status}): {res.stderr.strip()[-300:]}")


def parse_stat(text: str) -> list[tuple[str, int, str, str]]:
    """Lines of ``stat -c '%a %U %G %n'`` -> (path, mode, owner, group)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(" ", 3)
        if len(parts) != 4:
            raise ParseError(f"stat output line is not 'mode owner group path': {line!r}")
        mode, owner, group, path = parts
        try:
            out.append((path, int(mode, 8), owner, group))
        except ValueError:
            raise ParseError(f"stat printed mode {mode!r} for {path}") from None
    return out


def private_keys(shell: Shell, allowlist: Iterable[str], *, roots: Sequence[str] = DEFAULT_KEY_ROOTS,
                 prune: Sequence[str] = DEFAULT_PRUNE, greengrass_root: str = "/greengrass/v2",
                 timeout: float | None = None) -> PrivateKeyScan:
    """Files holding a private key (text or DER) under ``roots`` (and the Greengrass root),
    with mode/owner and allowlist match."""
    covered = any(greengrass_root == r or greengrass_root.startswith(r.rstrip("/") + "/") for r in roots)
    roots = tuple(roots) if covered else (*roots, greengrass_root)
    artifacts = artifact_roots(greengrass_root)
    allow = tuple(allowlist)
    text = shell.run(find_argv(roots, prune), sudo=True, timeout=timeout)
    _check_search(text, "text private keys")
    der = shell.run(der_argv(roots, prune), sudo=True, timeout=timeout)
    _check_search(der, "DER private keys")
    formats: dict[str, KeyFormat] = {p: "text" for p in text.stdout.splitlines() if p.strip()}
    for path, (size, head) in parse_der_heads(der.stdout).items():
        if der_private_key(head, size):
            formats.setdefault(path, "der")
    keys: list[KeyFile] = []
    if formats:
        st = shell.run(["stat", "-c", "%a %U %G %n", "--", *sorted(formats)], sudo=True,
                       timeout=timeout).check()
        for path, mode, owner, group in parse_stat(st.stdout):
            keys.append(KeyFile(path=path, mode=mode, owner=owner, group=group,
                                format=formats.get(path, "text"),
                                allowed=path_allowed(path, allow, artifacts)))
    return PrivateKeyScan(device=shell.device, roots=roots, allowlist=allow, keys=tuple(keys))
