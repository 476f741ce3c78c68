"""rackd: the lab host's rack services in one daemon, the PDU and the console server.

Run by `hil lab up` as ``python -m hil_lab.rackd --state-dir lab/.state`` in its own
session (pid in rackd.pid, log in rackd.log); `hil lab down` stops it. The hubs it
serves are listed in rackd.hubs, one name per line (slot N > 0: rackd-sN.pid, .log, .hubs).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import docker

from hil.errors import InfrastructureError, UserError
from hil_lab.console_server import ConsolePort
from hil_lab.pdu import ContainerOutlet, Outlet, TasmotaPdu, make_server
from hil_lab.state import LabPaths
from hil_lab.topology import LOOPBACK, PDU_PORT, REPO_ROOT, STATE_DIR, HubSpec, hub_by_name

log = logging.getLogger("hil_lab.rackd")

READY_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


def serve(paths: LabPaths, hubs: Sequence[HubSpec], *, host: str = LOOPBACK,
          pdu_port: int = PDU_PORT) -> None:
    """Serve until SIGTERM/SIGINT."""
    client = docker.from_env(timeout=120)
    consoles = {hub.name: ConsolePort(client, hub, host=host) for hub in hubs}
    outlets: dict[int, Outlet] = {
        hub.outlet: ContainerOutlet(client, hub.container, consoles[hub.name].power_on) for hub in hubs
    }
    server = make_server(TasmotaPdu(outlets), host, pdu_port)
    for console in consoles.values():
        console.serve()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, name="pdu", daemon=True).start()
    paths.rackd_pid.write_text(f"{os.getpid()}\n")
    log.info("rackd ready: PDU http://%s:%d, consoles %s", host, pdu_port,
             ", ".join(f"{h.name}={h.console_port}" for h in hubs))
    stop.wait()
    log.info("rackd stopping")
    server.shutdown()
    for console in consoles.values():
        console.close()
    with contextlib.suppress(FileNotFoundError):
        if paths.rackd_pid.read_text().strip() == str(os.getpid()):
            paths.rackd_pid.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil_lab.rackd", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stdout)
    paths = LabPaths(args.state_dir)
    hubs = [h for h in (hub_by_name(n) for n in served_hubs(paths)) if h is not None]
    if not hubs:
        log.error("no hubs listed in %s", paths.rackd_hubs)
        return 2
    try:
        serve(paths, hubs)
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        return 1
    return 0


# ---------------------------------------------------------------------- control


def served_hubs(paths: LabPaths) -> list[str]:
    try:
        return [line.strip() for line in paths.rackd_hubs.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def running_pid(paths: LabPaths) -> int | None:
    """rackd's pid if it runs (checked against /proc, not just the pid file)."""
    try:
        pid = int(paths.rackd_pid.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"hil_lab.rackd" in cmdline else None


def _port_open(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def start(paths: LabPaths, hubs: Sequence[HubSpec]) -> int:
    """Start rackd for ``hubs`` (restarting one that serves another set); return its pid."""
    names = [h.name for h in hubs]
    pid = running_pid(paths)
    if pid is not None and served_hubs(paths) == names:
        return pid
    stop(paths)
    taken = [p for p in [PDU_PORT, *(h.console_port for h in hubs)] if _port_open(p)]
    if taken:
        raise UserError(f"port(s) {', '.join(map(str, taken))} on {LOOPBACK} are taken by another "
                        "program; the lab's PDU and consoles need them. Stop that program "
                        "(`ss -ltnp` shows which) and retry.")
    paths.rackd_hubs.write_text("".join(f"{n}\n" for n in names))
    paths.rackd_pid.unlink(missing_ok=True)
    with paths.rackd_log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hil_lab.rackd", "--state-dir", str(paths.root)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=REPO_ROOT)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise InfrastructureError(f"rackd exited at start (status {proc.returncode}): "
                                      f"{_tail(paths.rackd_log)}")
        if running_pid(paths) == proc.pid and _port_open(PDU_PORT):
            return proc.pid
        time.sleep(0.1)
    raise InfrastructureError(f"rackd did not get ready within {READY_TIMEOUT:.0f}s "
                              f"(waited for the PDU on {LOOPBACK}:{PDU_PORT}); see {paths.rackd_log}")


def stop(paths: LabPaths) -> bool:
    """Stop rackd if it runs; True when one was stopped."""
    pid = running_pid(paths)
    if pid is None:
        paths.rackd_pid.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        # the pid file goes first; the listening sockets only with the process
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    paths.rackd_pid.unlink(missing_ok=True)
    return True


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


if __name__ == "__main__":
    sys.exit(main())
