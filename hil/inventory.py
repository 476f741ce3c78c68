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
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from hil.errors import InventoryError, InventoryProblems
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
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def known_hosts_name(host: str, port: int) -> str:
    """How OpenSSH / paramiko name an SSH endpoint in a known_hosts file."""
    return host if port == 22 else f"[{host}]:{port}"


class SshEndpoint(_Record):
    host: str = Field(min_length=1)
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(min_length=1)
    key_file: Path
    known_hosts: Path

    @property
    def known_hosts_name(self) -> str:
        return known_hosts_name(self.host, self.port)


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

    model_config = ConfigDict(extra="allow", frozen=True, use_attribute_docstrings=True)

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


class Service(StrEnum):
    """Something a hub runs that checks can be about (``expect.services`` in devices.yaml)."""

    SSH = "ssh"
    CONSOLE = "console"
    """A serial console with a login (the ``console:`` block says where)."""
    GREENGRASS = "greengrass"
    """An AWS IoT Greengrass v2 nucleus with its CLI (root: ``expect.greengrass_root``)."""
    DOCKER = "docker"
    """A container engine the harness reaches with ``sudo docker``."""
    MQTT_BROKER = "mqtt_broker"
    """An MQTT broker with mutual TLS (``expect.broker`` says where and with which identity)."""


GREENGRASS_ROOT = "/greengrass/v2"
"""The nucleus's default root folder (``--root`` of the installer)."""


class Expectations(_Record):
    services: frozenset[Service] | None = None
    """What the hub runs. Omitted: derived, see ``Device.services``."""
    greengrass_root: str = GREENGRASS_ROOT
    tcp_ports: list[int] = Field(default_factory=lambda: [22])
    udp_ports: list[int] = Field(default_factory=list)
    os_id: str = "debian"
    os_version_id: str | None = None
    broker: BrokerExpectation | None = None
    private_key_allowlist: list[str] = Field(default_factory=list)
    """Paths on the device (fnmatch patterns) allowed to hold private keys."""
    min_free_disk_mb: int = 200
    min_free_mem_mb: int = 64

    @field_validator("greengrass_root")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/") or "\0" in v:
            raise ValueError(f"greengrass_root must be an absolute path on the hub, got {v!r}")
        return v.rstrip("/") or "/"

    @field_validator("tcp_ports", "udp_ports")
    @classmethod
    def _ports(cls, v: list[int]) -> list[int]:
        bad = [p for p in v if not 1 <= p <= 65535]
        if bad:
            raise ValueError(f"port numbers must be 1..65535, got {bad}")
        return sorted(set(v))


class RecoveryStep(StrEnum):
    """One way of getting a hub back (``recovery`` in devices.yaml; hil.recovery implements them)."""

    SSH = "ssh"
    """Reconnect over SSH."""
    CONSOLE = "console"
    """Log in on the serial console and restart sshd (needs a ``console:`` block)."""
    POWER = "power"
    """Power-cycle the outlet and wait for the boot (needs a ``power:`` block)."""


class Device(_Record):
    name: str
    model: str = "unknown"
    tags: list[str] = Field(default_factory=list)
    ssh: SshEndpoint
    console: ConsoleSpec | None = None
    power: PowerSpec | None = None
    expect: Expectations = Field(default_factory=Expectations)
    recovery: tuple[RecoveryStep, ...] | None = None
    """The recovery steps to try, in order. Omitted: ssh, then console and power where the
    entry has them (``recovery_steps``)."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"device name {v!r} must be lower-case letters, digits, '.', '_' or '-'")
        return v

    @model_validator(mode="after")
    def _recovery_has_its_channels(self) -> Device:
        """A recovery step needs the channel it works through."""
        steps = self.recovery
        if steps is None:
            return self
        problem: str | None = None
        if not steps:
            problem = "must name at least one step (ssh, console, power)"
        elif len(set(steps)) != len(steps):
            problem = "names a step twice"
        for step, block, present in ((RecoveryStep.CONSOLE, "console", self.console is not None),
                                     (RecoveryStep.POWER, "power", self.power is not None)):
            if problem is None and step in steps and not present:
                problem = f"step '{step}' needs a {block} block"
        if problem is None:
            return self
        raise ValidationError.from_exception_data("Device", [InitErrorDetails(
            type=PydanticCustomError("recovery", problem), loc=("recovery",), input=list(steps))])

    @property
    def recovery_steps(self) -> tuple[RecoveryStep, ...]:
        """How this hub is recovered: ``recovery`` as given, else every channel the entry has."""
        if self.recovery is not None:
            return self.recovery
        return tuple(step for step, present in ((RecoveryStep.SSH, True),
                                                 (RecoveryStep.CONSOLE, self.console is not None),
                                                 (RecoveryStep.POWER, self.power is not None)) if present)

    @model_validator(mode="after")
    def _services_match_blocks(self) -> Device:
        """``expect.services`` must agree with the blocks that describe those services."""
        declared = self.expect.services
        if declared is None:
            return self
        problem: str | None = None
        if Service.SSH not in declared:
            problem = "must include 'ssh': the harness reaches every hub over SSH"
        for service, block, present in ((Service.CONSOLE, "console", self.console is not None),
                                        (Service.MQTT_BROKER, "expect.broker",
                                         self.expect.broker is not None)):
            if problem is None and service in declared and not present:
                problem = f"declares '{service}' but {block} is not set (it says how to reach it)"
            elif problem is None and service not in declared and present:
                problem = (f"{block} is set but '{service}' is not declared (add it to "
                           f"expect.services, or set {block}: null)")
        if problem is None:
            return self
        raise ValidationError.from_exception_data("Device", [InitErrorDetails(
            type=PydanticCustomError("services", problem), loc=("expect", "services"),
            input=sorted(declared))])

    @property
    def services(self) -> frozenset[Service]:
        """What this hub is declared to run; checks about anything else are not applicable.

        When ``expect.services`` is omitted the set is derived from what the entry
        describes: ssh always, console with a ``console:`` block, mqtt_broker with an
        ``expect.broker`` block, and never greengrass or docker. Why not "everything":
        a default that claims a service the hub lacks turns its checks into false
        failures (the nucleus-less gateway judged as a broken Greengrass hub); a default
        that claims too little makes checks *not applicable*, which the report names
        and the gate counts against promotion. The safe error is the visible one.
        """
        if self.expect.services is not None:
            return self.expect.services
        derived = {Service.SSH}
        if self.console is not None:
            derived.add(Service.CONSOLE)
        if self.expect.broker is not None:
            derived.add(Service.MQTT_BROKER)
        return frozenset(derived)

    def declares(self, service: Service) -> bool:
        return service in self.services


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
    _marks: Any = PrivateAttr(default=None)
    """The file's LineMarks (set by load_inventory): lines for problems found after loading."""

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
        """Local checks that need no device: key files, known_hosts entries, secret refs.

        Every problem of every device is reported together (InventoryProblems when several).
        """
        problems = _Problems(str(self.path), self._marks or LineMarks({}))
        for dev in devices if devices is not None else self.devices.values():
            for field, message in _device_file_problems(dev):
                problems.add_device(dev.name, tuple(field.split(".")), message)
        problems.raise_if_any()


# -- loading ----------------------------------------------------------------------

_PATH_FIELDS = {"key_file", "known_hosts", "ca_file", "cert_file", "expired_cert_file",
                "expired_key_file", "foreign_cert_file", "foreign_key_file", "directory"}
TOP_LEVEL_KEYS = ("lab", "defaults", "devices", "timeouts", "lease", "selection")

Loc = tuple[str | int, ...]
"""Where a value sits in the file: ("devices", "hub-01", "ssh", "port")."""


class LineMarks:
    """The 1-based line of every mapping key and list item of a YAML file, by location."""

    def __init__(self, lines: dict[Loc, int]) -> None:
        self.lines = lines

    @classmethod
    def of(cls, node: yaml.Node | None) -> LineMarks:
        out: dict[Loc, int] = {}

        def walk(n: yaml.Node, loc: Loc) -> None:
            if isinstance(n, yaml.MappingNode):
                for k, v in n.value:
                    here = (*loc, str(k.value))
                    out.setdefault(here, k.start_mark.line + 1)
                    walk(v, here)
            elif isinstance(n, yaml.SequenceNode):
                for i, item in enumerate(n.value):
                    out.setdefault((*loc, i), item.start_mark.line + 1)
                    walk(item, (*loc, i))

        if node is not None:
            walk(node, ())
        return cls(out)

    def find(self, *candidates: Loc) -> int | None:
        """The line of the first candidate found, each tried from its full length down."""
        for loc in candidates:
            for n in range(len(loc), 0, -1):
                if loc[:n] in self.lines:
                    return self.lines[loc[:n]]
        return None

    def of_device_field(self, device: str, field: Loc) -> int | None:
        """A device's field: in its own entry, else in ``defaults`` (merged in), else the entry."""
        own, default = ("devices", device, *field), ("defaults", *field)
        return self.lines.get(own) or self.lines.get(default) or self.find(own)


class _Problems:
    """Collects every problem of one file, so that all are reported at once."""

    def __init__(self, fname: str, marks: LineMarks) -> None:
        self.fname = fname
        self.marks = marks
        self.items: list[InventoryError] = []

    def add(self, message: str, *, loc: Loc = (), device: str | None = None,
            field: str | None = None, line: int | None = None) -> None:
        if line is None and loc:
            line = self.marks.find(loc)
        self.items.append(InventoryError(message, file=self.fname, line=line, device=device, field=field))

    def add_device(self, device: str, field: Loc, message: str) -> None:
        self.add(message, device=device, field=_loc(field) if field else None,
                 line=self.marks.of_device_field(device, field) if field else self.marks.find(
                     ("devices", device)))

    def raise_if_any(self) -> None:
        self.items.sort(key=lambda e: e.line or 0)  # in file order; those without a line first
        if len(self.items) == 1:
            raise self.items[0]
        if self.items:
            raise InventoryProblems(self.items)


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _resolve_paths(node: Any, root: Path, loc: Loc, bad: list[Loc]) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k in _PATH_FIELDS and isinstance(v, str):
                if "\0" in v:  # Path.resolve would raise ValueError
                    bad.append((*loc, k))
                    out[k] = ""
                else:
                    out[k] = str((root / os.path.expanduser(v)).resolve()) if v else v
            elif k == "password" and isinstance(v, str):
                out[k] = _resolve_secret_file(v, root)
            else:
                out[k] = _resolve_paths(v, root, (*loc, k), bad)
        return out
    if isinstance(node, list):
        return [_resolve_paths(v, root, (*loc, i), bad) for i, v in enumerate(node)]
    return node


def _resolve_secret_file(raw: str, root: Path) -> str:
    m = _SECRET_RE.match(raw.strip())
    if m and m.group("file"):
        return "${file:" + str((root / m.group("file")).resolve()) + "}"
    return raw


def _loc(loc: Loc) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field (typo?)"
    if err["type"] == "missing":
        return "required field is missing"
    return str(err["msg"]).removeprefix("Value error, ")


class _InventoryLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 (PyYAML's default) also reads on/off/yes/no
    as booleans, which turned the command power driver's documented ``on:``/``off:`` keys into
    True/False."""


_InventoryLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_InventoryLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _parse_yaml(raw_bytes: bytes, fname: str) -> tuple[Any, LineMarks]:
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise InventoryError("inventory is not UTF-8 text", file=fname) from None
    loader: _InventoryLoader | None = None
    try:
        loader = _InventoryLoader(text)  # its reader already rejects unprintable characters
        node = loader.get_single_node()
        doc = loader.construct_document(node) if node is not None else None
    except RecursionError:
        raise InventoryError("nesting is too deep to be an inventory", file=fname) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InventoryError(f"not valid YAML{where}: {problem}", file=fname,
                             line=mark.line + 1 if mark else None) from None
    finally:
        if loader is not None:
            loader.dispose()
    return doc, LineMarks.of(node)


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    """Parse and validate ``path``; raise ``InventoryError`` (``InventoryProblems`` when there is
    more than one) naming file, line, device and field of every problem found."""
    p = Path(path)
    fname = str(p)
    try:
        raw_bytes = p.read_bytes()
    except FileNotFoundError:
        raise InventoryError("inventory file not found", file=fname) from None
    except OSError as exc:
        raise InventoryError(f"cannot read inventory: {exc.strerror}", file=fname) from None
    doc, marks = _parse_yaml(raw_bytes, fname)
    if not isinstance(doc, dict):
        raise InventoryError("top level must be a mapping with a 'devices:' section", file=fname)
    problems = _Problems(fname, marks)
    for key in doc:
        if key not in TOP_LEVEL_KEYS:
            problems.add(f"unknown top-level key {key!r}; allowed: {list(TOP_LEVEL_KEYS)}",
                         loc=(str(key),), field=str(key))
    devices_raw = doc.get("devices")
    if not isinstance(devices_raw, dict) or not devices_raw:
        problems.add("'devices' must be a non-empty mapping of device name -> settings",
                     loc=("devices",), field="devices")
        devices_raw = {}
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.add("'defaults' must be a mapping", loc=("defaults",), field="defaults")
        defaults = {}
    root = p.resolve().parent
    bad_paths: list[Loc] = []
    defaults = _resolve_paths(defaults, root, ("defaults",), bad_paths)

    devices: dict[str, Device] = {}
    for name, body in devices_raw.items():
        dname = str(name)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            problems.add_device(dname, (), "device settings must be a mapping")
            continue
        merged = _deep_merge(defaults, _resolve_paths(body, root, ("devices", dname), bad_paths))
        merged["name"] = dname
        _check_power(dname, merged.get("power"), problems)
        try:
            dev = Device.model_validate(merged)
        except ValidationError as exc:
            for err in exc.errors():
                if err["loc"][:1] != ("power",):  # _check_power has said it
                    problems.add_device(dname, tuple(err["loc"]), _message(err))
            continue
        twin = next((o for o in devices.values() if (o.ssh.host, o.ssh.port) == (dev.ssh.host, dev.ssh.port)),
                    None)
        if twin is not None:
            problems.add_device(dname, ("ssh", "host"),
                                f"ssh endpoint {dev.ssh.host}:{dev.ssh.port} is also used by {twin.name}")
            continue
        devices[dname] = dev
    for loc in bad_paths:
        device = str(loc[1]) if loc[0] == "devices" else None
        field = loc[2:] if device else loc
        problems.add("a path must not contain a NUL character", loc=loc, device=device, field=_loc(field))

    rest = {k: doc[k] for k in ("timeouts", "lease", "selection") if doc.get(k) is not None}
    rest = _resolve_paths(rest, root, (), bad_paths)
    inventory: Inventory | None = None
    try:
        inventory = Inventory(path=p.resolve(), sha256=hashlib.sha256(raw_bytes).hexdigest(),
                              lab=str(doc.get("lab") or "lab"), devices=devices, **rest)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            problems.add(_message(err), loc=loc, field=_loc(loc))
    problems.raise_if_any()
    assert inventory is not None
    inventory._marks = marks
    return inventory


def _check_power(device: str, raw: object, problems: _Problems) -> None:
    """Power driver name and parameters, checked against the driver registry at load time."""
    if raw is None:
        return
    try:
        spec = PowerSpec.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            problems.add_device(device, ("power", *err["loc"]), _message(err))
        return
    from hil.drivers.power import power_problems  # the registry imports this module

    for field, message in power_problems(spec):
        problems.add_device(device, ("power", *field), message)


def _device_file_problems(dev: Device) -> list[tuple[str, str]]:
    """(field, message) for every local file or secret of ``dev`` that is missing."""
    out: list[tuple[str, str]] = []
    if not dev.ssh.key_file.is_file():
        out.append(("ssh.key_file", f"SSH key file {dev.ssh.key_file} does not exist"))
    if not dev.ssh.known_hosts.is_file():
        out.append(("ssh.known_hosts", f"known_hosts file {dev.ssh.known_hosts} does not exist"))
    elif not known_hosts_has(dev.ssh.known_hosts, dev.ssh.known_hosts_name):
        out.append(("ssh.known_hosts",
                    f"no host key for {dev.ssh.known_hosts_name} in {dev.ssh.known_hosts}; the harness never "
                    "trusts an unknown host key (add it with ssh-keyscan after checking its fingerprint)"))
    if dev.console and dev.console.login and dev.console.login.password:
        try:
            dev.console.login.password.resolve()
        except InventoryError as exc:
            out.append(("console.login.password", exc.detail))
    if dev.expect.broker:
        b = dev.expect.broker
        for fld in ("ca_file", "cert_file", "key_file"):
            f: Path = getattr(b, fld)
            if not f.is_file():
                out.append((f"expect.broker.{fld}", f"{f} does not exist"))
    return out


def known_hosts_has(known_hosts: Path, name: str) -> bool:
    """True when ``known_hosts`` has an entry for ``name`` (hashed entries included)."""
    import paramiko  # local import: inventory loading stays fast for `hil devices`

    try:
        hk = paramiko.HostKeys(str(known_hosts))
    except (OSError, paramiko.SSHException):
        return False
    return hk.lookup(name) is not None

