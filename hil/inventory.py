"""devices.yaml -> typed, validated records.

The inventory is passive data: it never touches a device. Every error names the
file, the device and the field, so that a person can fix it without reading code.
Secrets are references (``${ENV_NAME}`` or ``${file:relative/path}``), never values.
Relative paths are resolved against the inventory file's folder.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hil.errors import InventoryError
from hil.timeouts import Timeouts

_SECRET_RE = re.compile(r"^\$\{(?:(?P<env>[A-Za-z_][A-Za-z0-9_]*)|file:(?P<file>[^}]+))\}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_CONSOLE_SCHEMES = ("socket", "rfc2217", "loop")


class SecretRef(BaseModel):
    """A reference to a secret: an environment variable or a file. Never the value."""

    model_config = ConfigDict(frozen=True)

    env: str | None = None
    file: Path | None = None

    @classmethod
    def parse(cls, raw: object) -> SecretRef:
        if isinstance(raw, SecretRef):
            return raw
        if not isinstance(raw, str) or not (m := _SECRET_RE.match(raw.strip())):
            raise ValueError(
                "secrets must be references such as ${HIL_CONSOLE_PASSWORD} or "
                "${file:path/to/secret}, never the secret itself"
            )
        if m.group("env"):
            return cls(env=m.group("env"))
        return cls(file=Path(m.group("file")))

    def resolve(self) -> str:
        """The secret's value (registered for redaction); InventoryError naming the reference when unset."""
        from hil.redact import register_secret

        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise InventoryError(f"environment variable {self.env} is not set")
        else:
            assert self.file is not None
            try:
                value = self.file.read_text().strip()
            except OSError as exc:
                raise InventoryError(f"secret file {self.file} cannot be read: {exc.strerror}") from None
        register_secret(value)
        return value

    def __str__(self) -> str:  # never shows the value
        return f"${{{self.env}}}" if self.env else f"${{file:{self.file}}}"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SshEndpoint(_Record):
    host: str = Field(min_length=1)
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(min_length=1)
    key_file: Path
    known_hosts: Path

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH / paramiko name this endpoint in a known_hosts file."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


class ConsoleLogin(_Record):
    user: str = Field(min_length=1)
    password: SecretRef | None = None

    @field_validator("password", mode="before")
    @classmethod
    def _secret(cls, v: object) -> SecretRef | None:
        return None if v is None else SecretRef.parse(v)


class ConsoleSpec(_Record):
    url: str
    baud: int = Field(default=115200, gt=0)
    login: ConsoleLogin | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v.startswith("/dev/"):
            return v
        scheme = urlparse(v).scheme
        if scheme not in _CONSOLE_SCHEMES:
            raise ValueError(
                f"console url {v!r} must be a serial device (/dev/tty...) or a pyserial URL "
                f"({', '.join(s + '://' for s in _CONSOLE_SCHEMES)})"
            )
        return v


class PowerSpec(BaseModel):
    """``driver`` picks a class from the power-driver registry; the rest are its parameters."""

    model_config = ConfigDict(extra="allow", frozen=True)

    driver: str = Field(min_length=1)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class BrokerExpectation(_Record):
    host: str | None = None
    """Defaults to the device's SSH host."""
    port: int = Field(default=8883, ge=1, le=65535)
    ca_file: Path
    cert_file: Path
    key_file: Path
    expired_cert_file: Path | None = None
    expired_key_file: Path | None = None
    foreign_cert_file: Path | None = None
    foreign_key_file: Path | None = None


class Expectations(_Record):
    tcp_ports: list[int] = Field(default_factory=lambda: [22])
    udp_ports: list[int] = Field(default_factory=list)
    os_id: str = "debian"
    os_version_id: str | None = None
    broker: BrokerExpectation | None = None
    private_key_allowlist: list[str] = Field(default_factory=list)
    """Paths on the device (fnmatch patterns) allowed to hold private keys."""
    min_free_disk_mb: int = 200
    min_free_mem_mb: int = 64

    @field_validator("tcp_ports", "udp_ports")
    @classmethod
    def _ports(cls, v: list[int]) -> list[int]:
        bad = [p for p in v if not 1 <= p <= 65535]
        if bad:
            raise ValueError(f"port numbers must be 1..65535, got {bad}")
        return sorted(set(v))


class Device(_Record):
    name: str
    model: str = "unknown"
    tags: list[str] = Field(default_factory=list)
    ssh: SshEndpoint
    console: ConsoleSpec | None = None
    power: PowerSpec | None = None
    expect: Expectations = Field(default_factory=Expectations)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"device name {v!r} must be lower-case letters, digits, '.', '_' or '-'")
        return v


class LeaseSettings(_Record):
    store: str | None = None
    """None: file locks on this host. ``postgresql://user@host/db``: a shared store."""
    password: SecretRef | None = None
    """The store's password, by reference (or libpq's PGPASSWORD / .pgpass); never in ``store``."""
    directory: Path | None = None
    """File locks: default /var/lib/hil/leases/<lab>."""
    ttl: float = Field(default=60.0, gt=0)

    @field_validator("store")
    @classmethod
    def _no_inline_password(cls, v: str | None) -> str | None:
        if v is not None and urlparse(v).password is not None:
            raise ValueError("the store URL carries a password: secrets are references, never values "
                             "(drop it from the URL and set lease.password: ${HIL_LEASE_PASSWORD})")
        return v

    @field_validator("password", mode="before")
    @classmethod
    def _secret(cls, v: object) -> SecretRef | None:
        return None if v is None else SecretRef.parse(v)


class Selection(_Record):
    exclude_tags: list[str] = Field(default_factory=list)
    """Devices with these tags are left out unless asked for by name or tag."""


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    path: Path
    sha256: str
    lab: str = "lab"
    devices: dict[str, Device]
    timeouts: Timeouts = Field(default_factory=Timeouts)
    lease: LeaseSettings = Field(default_factory=LeaseSettings)
    selection: Selection = Field(default_factory=Selection)

    @model_validator(mode="after")
    def _unique_endpoints(self) -> Inventory:
        seen: dict[tuple[str, int], str] = {}
        for dev in self.devices.values():
            key = (dev.ssh.host, dev.ssh.port)
            if key in seen:
                raise ValueError(
                    f"device {dev.name}: ssh endpoint {key[0]}:{key[1]} is also used by {seen[key]}"
                )
            seen[key] = dev.name
        return self

    # -- selection -------------------------------------------------------------
    def select(self, names: Iterable[str] = (), tags: Iterable[str] = ()) -> list[Device]:
        """Devices by name and/or tag; with neither, all but the excluded tags."""
        names, tags = list(names), list(tags)
        unknown = [n for n in names if n not in self.devices]
        if unknown:
            raise InventoryError(
                f"unknown device {', '.join(unknown)} (known: {', '.join(self.devices)})",
                file=str(self.path),
            )
        if names or tags:
            return [d for d in self.devices.values()
                    if d.name in names or any(t in d.tags for t in tags)]
        excluded = set(self.selection.exclude_tags)
        return [d for d in self.devices.values() if not excluded.intersection(d.tags)]

    def check_files(self, devices: Iterable[Device] | None = None) -> None:
        """Local checks that need no device: key files, known_hosts entries, secret refs."""
        for dev in devices if devices is not None else self.devices.values():
            _check_device_files(self.path, dev)


# -- loading ----------------------------------------------------------------------

_PATH_FIELDS = {"key_file", "known_hosts", "ca_file", "cert_file", "expired_cert_file",
                "expired_key_file", "foreign_cert_file", "foreign_key_file", "directory"}


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _resolve_paths(node: Any, root: Path) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k in _PATH_FIELDS and isinstance(v, str):
                if "\0" in v:  # Path.resolve would raise ValueError
                    raise InventoryError("a path must not contain a NUL character", field=k)
                out[k] = str((root / os.path.expanduser(v)).resolve()) if v else v
            elif k == "password" and isinstance(v, str):
                out[k] = _resolve_secret_file(v, root)
            else:
                out[k] = _resolve_paths(v, root)
        return out
    if isinstance(node, list):
        return [_resolve_paths(v, root) for v in node]
    return node


def _resolve_paths_in(node: Any, root: Path, fname: str, device: str | None, prefix: str) -> Any:
    try:
        return _resolve_paths(node, root)
    except InventoryError as exc:
        raise InventoryError(exc.detail, file=fname, device=device,
                             field=f"{prefix}{exc.field}" if exc.field else None) from None


def _resolve_secret_file(raw: str, root: Path) -> str:
    m = _SECRET_RE.match(raw.strip())
    if m and m.group("file"):
        return "${file:" + str((root / m.group("file")).resolve()) + "}"
    return raw


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    """Parse and validate ``path``; raise ``InventoryError`` naming file/device/field."""
    p = Path(path)
    fname = str(p)
    try:
        raw_bytes = p.read_bytes()
    except FileNotFoundError:
        raise InventoryError("inventory file not found", file=fname) from None
    except OSError as exc:
        raise InventoryError(f"cannot read inventory: {exc.strerror}", file=fname) from None
    try:
        doc = yaml.safe_load(raw_bytes.decode("utf-8"))
    except UnicodeDecodeError:
        raise InventoryError("inventory is not UTF-8 text", file=fname) from None
    except RecursionError:
        raise InventoryError("nesting is too deep to be an inventory", file=fname) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InventoryError(f"not valid YAML{where}: {problem}", file=fname) from None
    if not isinstance(doc, dict):
        raise InventoryError("top level must be a mapping with a 'devices:' section", file=fname)
    allowed_top = {"lab", "defaults", "devices", "timeouts", "lease", "selection"}
    extra = sorted(str(k) for k in doc if k not in allowed_top)
    if extra:
        raise InventoryError(f"unknown top-level key(s) {extra}; allowed: {sorted(allowed_top)}",
                             file=fname, field=extra[0])
    devices_raw = doc.get("devices")
    if not isinstance(devices_raw, dict) or not devices_raw:
        raise InventoryError("'devices' must be a non-empty mapping of device name -> settings",
                             file=fname, field="devices")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise InventoryError("'defaults' must be a mapping", file=fname, field="defaults")
    root = p.resolve().parent
    defaults = _resolve_paths_in(defaults, root, fname, None, "defaults.")

    devices: dict[str, Device] = {}
    for name, body in devices_raw.items():
        dname = str(name)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise InventoryError("device settings must be a mapping", file=fname, device=dname)
        merged = _deep_merge(defaults, _resolve_paths_in(body, root, fname, dname, ""))
        merged["name"] = dname
        try:
            devices[dname] = Device.model_validate(merged)
        except ValidationError as exc:
            raise _from_validation(exc, fname, dname) from None
        dev = devices[dname]
        for other in devices.values():
            if other is not dev and (other.ssh.host, other.ssh.port) == (dev.ssh.host, dev.ssh.port):
                raise InventoryError(
                    f"ssh endpoint {dev.ssh.host}:{dev.ssh.port} is also used by {other.name}",
                    file=fname, device=dname, field="ssh.host")

    rest = {k: doc[k] for k in ("timeouts", "lease", "selection") if doc.get(k) is not None}
    rest = _resolve_paths_in(rest, root, fname, None, "")
    try:
        return Inventory(path=p.resolve(), sha256=hashlib.sha256(raw_bytes).hexdigest(),
                         lab=str(doc.get("lab") or "lab"), devices=devices, **rest)
    except ValidationError as exc:
        raise _from_validation(exc, fname, None) from None


def _from_validation(exc: ValidationError, fname: str, device: str | None) -> InventoryError:
    errors = exc.errors()
    first = errors[0]
    loc = tuple(first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field (typo?)"
    elif first["type"] == "missing":
        msg = "required field is missing"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return InventoryError(msg + more, file=fname, device=device, field=_loc(loc))


def _check_device_files(inv_path: Path, dev: Device) -> None:
    fname = str(inv_path)
    if not dev.ssh.key_file.is_file():
        raise InventoryError(f"SSH key file {dev.ssh.key_file} does not exist",
                             file=fname, device=dev.name, field="ssh.key_file")
    if not dev.ssh.known_hosts.is_file():
        raise InventoryError(f"known_hosts file {dev.ssh.known_hosts} does not exist",
                             file=fname, device=dev.name, field="ssh.known_hosts")
    if not known_hosts_has(dev.ssh.known_hosts, dev.ssh.known_hosts_name):
        raise InventoryError(
            f"no host key for {dev.ssh.known_hosts_name} in {dev.ssh.known_hosts}; the harness never "
            "trusts an unknown host key (add it with ssh-keyscan after checking its fingerprint)",
            file=fname, device=dev.name, field="ssh.known_hosts")
    if dev.console and dev.console.login and dev.console.login.password:
        try:
            dev.console.login.password.resolve()
        except InventoryError as exc:
            raise InventoryError(exc.detail, file=fname, device=dev.name,
                                 field="console.login.password") from None
    if dev.expect.broker:
        b = dev.expect.broker
        for fld in ("ca_file", "cert_file", "key_file"):
            f: Path = getattr(b, fld)
            if not f.is_file():
                raise InventoryError(f"{f} does not exist", file=fname, device=dev.name,
                                     field=f"expect.broker.{fld}")


def known_hosts_has(known_hosts: Path, name: str) -> bool:
    """True when ``known_hosts`` has an entry for ``name`` (hashed entries included)."""
    import paramiko  # local import: inventory loading stays fast for `hil devices`

    try:
        hk = paramiko.HostKeys(str(known_hosts))
    except (OSError, paramiko.SSHException):
        return False
    return hk.lookup(name) is not None

