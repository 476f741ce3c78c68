"""Open ports of one hub: a TCP scan from the harness, and the hub's own socket list.

The network scan uses nmap (the field's scanner, Debian package ``nmap``) and falls
back to an asyncio connect scan only when nmap is absent. It scans exactly one
address, resolved from the inventory's host name: never a range or a subnet.
UDP cannot be told open from filtered by a connect scan, so UDP (and loopback-only
listeners) come from ``ss`` on the device.
"""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import json
import re
import shutil
import socket
import ssl
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from hil.drivers.base import Shell
from hil.errors import CommandTimeout, ParseError, UserError
from hil.steps import step

FORBIDDEN_TCP_PORTS: tuple[int, ...] = (21, 23, 1883, 2375, 2376)
"""Never acceptable on a hub: FTP, telnet, plaintext MQTT, the Docker API."""

DOCKER_API_PORTS: tuple[int, ...] = (2375, 2376)
ALL_TCP_PORTS = range(1, 65536)

NMAP_TIMEOUT = 120.0
"""A full -p- connect scan of one reachable hub takes about a second; this bounds a stuck one."""


@dataclass(frozen=True)
class PortScan:
    """The result of a TCP scan of one address, with what the scanner says it covered."""

    host: str
    address: str
    open_ports: tuple[int, ...]
    tool: Literal["nmap", "python-connect"]
    tool_version: str | None
    ports_scanned: int
    """How many ports the scanner says it scanned (nmap: scaninfo numservices)."""
    duration: float
    complete: bool
    """False when the fallback scan hit its deadline before every port was tried."""
    answered_ports: int = 0
    """Ports the host itself answered for (open, or closed by a reset): proof it was reached."""
    filtered_ports: int = 0
    """Ports that gave no answer at all (a firewall drops them, or nothing is there)."""

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("host_seen",)

    @property
    def host_seen(self) -> bool:
        """The host answered at least one probe (nmap -Pn only *assumes* a host is up)."""
        return self.answered_ports > 0

    def coverage_problems(self, must_be_open: Iterable[int] = ()) -> tuple[str, ...]:
        """Why this scan cannot support a verdict (empty: it can).

        A scan that saw nothing - every port filtered, the host never answering, the known
        SSH port not seen open although the harness logs in through it - proves nothing
        about what is open; it must not pass a port check.
        """
        out: list[str] = []
        if not self.complete or self.ports_scanned < len(ALL_TCP_PORTS):
            out.append(f"{self.tool} scanned {self.ports_scanned} of {len(ALL_TCP_PORTS)} TCP ports")
        if not self.host_seen:
            out.append(f"{self.address} answered no probe ({self.filtered_ports} ports filtered)")
        missing = sorted(set(must_be_open) - set(self.open_ports))
        if missing:
            out.append(f"port(s) {', '.join(map(str, missing))} not seen open although the harness "
                       "reaches the hub there: the scan did not see the hub's services")
        return tuple(out)


@dataclass(frozen=True)
class PortComparison:
    """A scan held against the device's allowlist from devices.yaml."""

    scan: PortScan
    allowed: tuple[int, ...]
    unexpected: tuple[int, ...]
    """Open but not in the allowlist."""
    forbidden: tuple[int, ...]
    """Open and in ``FORBIDDEN_TCP_PORTS`` (a subset of ``unexpected`` unless allowlisted)."""
    missing: tuple[int, ...]
    """Allowlisted but closed: informational (a service may be down)."""


def compare_ports(scan: PortScan, allowed: Iterable[int]) -> PortComparison:
    allow = tuple(sorted(set(allowed)))
    opened = set(scan.open_ports)
    return PortComparison(
        scan=scan,
        allowed=allow,
        unexpected=tuple(sorted(opened - set(allow))),
        forbidden=tuple(sorted(opened & set(FORBIDDEN_TCP_PORTS))),
        missing=tuple(sorted(set(allow) - opened)),
    )


# -- one address, never a range -------------------------------------------------------

def resolve_one_address(host: str) -> str:
    """The single IP address ``host`` stands for; refuses ranges, subnets and lists."""
    if not host or any(c in host for c in "/,* \t") or host.startswith("-"):
        raise UserError(f"scan target {host!r} must be one host name or address, not a range")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    # nmap reads "10.0.0.1-20" as a range: such a string is not a host name either
    if re.fullmatch(r"[0-9.\-]+", host):
        raise UserError(f"scan target {host!r} must be one host name or address, not a range")
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"scan target {host!r} does not resolve: {exc.strerror}") from None
    return str(infos[0][4][0])


# -- nmap ---------------------------------------------------------------------------------

def nmap_argv(address: str, ports: str = "-") -> list[str]:
    port_arg = "-p-" if ports == "-" else f"-p{ports}"
    ipv6 = ["-6"] if ":" in address else []
    return ["nmap", "-sT", port_arg, "-T4", "-n", "-Pn", *ipv6, "-oX", "-", address]


@dataclass(frozen=True)
class NmapRun:
    """What one ``nmap -oX -`` run reports about one host."""

    open_ports: tuple[int, ...]
    version: str | None
    ports_scanned: int
    answered_ports: int
    filtered_ports: int
    host_state: str


_ANSWERED_STATES = ("open", "closed", "unfiltered")


def parse_nmap_run(text: str) -> NmapRun:
    """Open ports and coverage (scaninfo numservices; ports the host answered) from nmap XML."""
    try:
        root = ET.fromstring(text)  # noqa: S314 - output of our own local nmap run
    except ET.ParseError as exc:
        raise ParseError(f"nmap XML cannot be parsed: {exc}") from None
    if root.tag != "nmaprun":
        raise ParseError(f"not nmap XML output (root element {root.tag!r})")
    hosts = root.findall("host")
    if not hosts:
        raise ParseError("nmap reported no host: the target was not scanned")
    if len(hosts) > 1:
        raise ParseError(f"nmap reported {len(hosts)} hosts for a one-address scan")
    host = hosts[0]
    opened: list[int] = []
    answered = filtered = 0
    for p in host.iter("port"):
        st = p.find("state")
        state = st.attrib.get("state", "") if st is not None else ""
        if p.attrib.get("protocol") != "tcp":
            continue
        if state == "open":
            opened.append(int(p.attrib["portid"]))
        if state in _ANSWERED_STATES:
            answered += 1
        elif "filtered" in state:
            filtered += 1
    for extra in host.iter("extraports"):
        count = int(extra.attrib.get("count", "0"))
        if extra.attrib.get("state") in _ANSWERED_STATES:
            answered += count
        else:
            filtered += count
    info = root.find("scaninfo")
    scanned = int(info.attrib.get("numservices", "0")) if info is not None else 0
    status = host.find("status")
    return NmapRun(open_ports=tuple(sorted(opened)), version=root.attrib.get("version"),
                   ports_scanned=scanned, answered_ports=answered, filtered_ports=filtered,
                   host_state=status.attrib.get("state", "?") if status is not None else "?")


def parse_nmap_xml(text: str) -> tuple[tuple[int, ...], str | None, int]:
    """(open TCP ports, nmap version, number of ports scanned) from ``nmap -oX -`` output."""
    run = parse_nmap_run(text)
    return run.open_ports, run.version, run.ports_scanned


def _scan_nmap(nmap: str, host: str, address: str, timeout: float) -> PortScan:
    argv = nmap_argv(address)
    argv[0] = nmap
    with step("nmap TCP scan", device=None, host=host, address=address) as st:
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise CommandTimeout(f"nmap scan of {address} did not finish within {timeout:.0f} s") from None
        duration = time.perf_counter() - t0
        st.record(proc.returncode)
        st.attach("nmap.xml", proc.stdout)
        if proc.returncode != 0:
            raise ParseError(f"nmap exited {proc.returncode} scanning {address}: {proc.stderr.strip()}")
    run = parse_nmap_run(proc.stdout)
    return PortScan(host=host, address=address, open_ports=run.open_ports, tool="nmap",
                    tool_version=run.version, ports_scanned=run.ports_scanned, duration=duration,
                    complete=run.ports_scanned == len(ALL_TCP_PORTS), answered_ports=run.answered_ports,
                    filtered_ports=run.filtered_ports)


# -- pure-Python fallback --------------------------------------------------------------

@dataclass
class _Tally:
    opened: list[int] = field(default_factory=list)
    tried: int = 0
    refused: int = 0


async def _connect_scan(address: str, ports: Sequence[int], *, concurrency: int, connect_timeout: float,
                        deadline: float) -> _Tally:
    tally = _Tally()
    it = iter(ports)
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    async def worker() -> None:
        for port in it:  # workers share one iterator: bounded concurrency without 65535 tasks
            if loop.time() > deadline:
                return
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, (address, port)), connect_timeout)
                tally.opened.append(port)
            except ConnectionRefusedError:
                tally.refused += 1  # the host answered with a reset: closed, and proof it is there
            except (OSError, TimeoutError):
                pass  # unreachable or filtered: not open, and no answer
            finally:
                sock.close()
            tally.tried += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    tally.opened.sort()
    return tally


def scan_tcp_python(host: str, *, ports: Sequence[int] = ALL_TCP_PORTS, concurrency: int = 512,
                    connect_timeout: float = 1.0, deadline: float = 120.0) -> PortScan:
    """Connect scan of one address in pure Python (slow: the fallback when nmap is absent)."""
    address = resolve_one_address(host)
    with step("python TCP connect scan", host=host, address=address, ports=len(ports)):
        t0 = time.perf_counter()

        async def main() -> _Tally:
            end = asyncio.get_running_loop().time() + deadline
            return await _connect_scan(address, ports, concurrency=concurrency,
                                       connect_timeout=connect_timeout, deadline=end)

        tally = asyncio.run(main())
        duration = time.perf_counter() - t0
    answered = len(tally.opened) + tally.refused
    return PortScan(host=host, address=address, open_ports=tuple(tally.opened), tool="python-connect",
                    tool_version=None, ports_scanned=tally.tried, duration=duration,
                    complete=tally.tried == len(ports), answered_ports=answered,
                    filtered_ports=tally.tried - answered)


def scan_tcp(host: str, *, nmap: str | None = None, timeout: float = NMAP_TIMEOUT,
             use_fallback_when_no_nmap: bool = True) -> PortScan:
    """Full 1-65535 TCP scan of one hub with nmap, or the Python fallback when nmap is absent."""
    address = resolve_one_address(host)
    nmap_path = nmap or shutil.which("nmap")
    if nmap_path:
        return _scan_nmap(nmap_path, host, address, timeout)
    if not use_fallback_when_no_nmap:
        raise UserError("nmap is not installed (Debian package 'nmap')")
    return scan_tcp_python(host, deadline=timeout)


# -- device side: ss ---------------------------------------------------------------------

@dataclass(frozen=True)
class ListeningSocket:
    protocol: Literal["tcp", "udp"]
    address: str
    """Local address without brackets; ``*`` for any."""
    port: int
    processes: tuple[str, ...]

    @property
    def loopback_only(self) -> bool:
        try:
            return ipaddress.ip_address(self.address.split("%")[0]).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True)
class ListeningSockets:
    device: str
    sockets: tuple[ListeningSocket, ...]

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("tcp_ports", "udp_ports")

    @property
    def tcp_ports(self) -> tuple[int, ...]:
        return tuple(sorted({s.port for s in self.sockets if s.protocol == "tcp"}))

    @property
    def udp_ports(self) -> tuple[int, ...]:
        return tuple(sorted({s.port for s in self.sockets if s.protocol == "udp"}))

    def unexpected(self, protocol: Literal["tcp", "udp"], allowed: Iterable[int], *,
                   include_loopback: bool = True) -> tuple[ListeningSocket, ...]:
        allow = set(allowed)
        return tuple(s for s in self.sockets if s.protocol == protocol and s.port not in allow
                     and (include_loopback or not s.loopback_only))


_PROC_RE = re.compile(r'\("([^"]+)",pid=')


def _split_endpoint(text: str) -> tuple[str, int]:
    addr, _, port = text.rpartition(":")
    if not addr or not port.isdigit():
        raise ParseError(f"cannot read local address {text!r} in ss output")
    if addr.startswith("[") and "]" in addr:
        addr = addr[1:addr.index("]")] + addr[addr.index("]") + 1:]
    return addr, int(port)


def parse_ss(text: str) -> tuple[ListeningSocket, ...]:
    """Parse ``ss -H -ltnup`` output (netid state recv-q send-q local peer [process])."""
    out: list[ListeningSocket] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) < 6 or fields[0] not in ("tcp", "udp"):
            raise ParseError(f"ss output line {lineno} is not 'netid state recv-q send-q local peer': "
                             f"{line!r}")
        addr, port = _split_endpoint(fields[4])
        procs = tuple(dict.fromkeys(_PROC_RE.findall(" ".join(fields[6:]))))
        proto: Literal["tcp", "udp"] = "tcp" if fields[0] == "tcp" else "udp"
        out.append(ListeningSocket(protocol=proto, address=addr, port=port, processes=procs))
    return tuple(out)


def listening_sockets(shell: Shell, *, timeout: float | None = None) -> ListeningSockets:
    """The device's listening TCP and UDP sockets (loopback included), with their processes."""
    res = shell.run(["ss", "-H", "-ltnup"], sudo=True, timeout=timeout).check()
    return ListeningSockets(device=shell.device, sockets=parse_ss(res.stdout))


# -- Docker API on TCP -----------------------------------------------------------------

@dataclass(frozen=True)
class DockerApiPort:
    port: int
    open: bool
    tls: bool
    api_version: str | None
    """Set when the port answered GET /version like a Docker engine."""
    error: str | None


@dataclass(frozen=True)
class DockerApiExposure:
    host: str
    ports: tuple[DockerApiPort, ...]

    __evidence_properties__: ClassVar[tuple[str, ...]] = ("exposed",)

    @property
    def exposed(self) -> bool:
        """Any Docker API port reachable from the network (answering or not)."""
        return any(p.open for p in self.ports)


def _docker_version(address: str, port: int, use_tls: bool, timeout: float) -> DockerApiPort:
    try:
        socket.create_connection((address, port), timeout=timeout).close()
    except OSError as exc:
        return DockerApiPort(port=port, open=False, tls=use_tls, api_version=None, error=str(exc))
    conn: http.client.HTTPConnection
    if use_tls:
        # detection only: whoever answers, we want to know it is there
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(address, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", "/version")
        body = conn.getresponse().read(65536)
        version = json.loads(body).get("ApiVersion")
        return DockerApiPort(port=port, open=True, tls=use_tls,
                             api_version=str(version) if version else None, error=None)
    except (OSError, ValueError, http.client.HTTPException, AttributeError) as exc:
        return DockerApiPort(port=port, open=True, tls=use_tls, api_version=None,
                             error=f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def docker_api_exposure(host: str, *, ports: Sequence[int] = DOCKER_API_PORTS,
                        timeout: float = 3.0) -> DockerApiExposure:
    """Is the Docker engine API reachable over TCP on ``host`` (2375 plain, 2376 TLS)?"""
    address = resolve_one_address(host)
    return DockerApiExposure(host=host, ports=tuple(
        _docker_version(address, p, use_tls=(p == 2376), timeout=timeout) for p in ports))
