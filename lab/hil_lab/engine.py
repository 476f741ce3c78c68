"""Find the Docker engine the lab runs on, or (root on Debian only) install and start one.

Where an engine already answers (a laptop, a CI runner) it is used as it is. We
remember an engine we started ourselves (pid file) so that `hil lab down
--stop-engine` stops that one and never somebody else's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors

from hil.errors import InfrastructureError, UserError
from hil_lab.state import LabPaths

PING_TIMEOUT = 5.0
ENGINE_START_TIMEOUT = 60.0
ENGINE_STOP_TIMEOUT = 20.0
APT_TIMEOUT = 600.0
CLIENT_TIMEOUT = 120
"""Seconds for one Docker API call (stop with t=5, image pushes...)."""

Report = Callable[[str], None]


class EngineUnavailable(UserError):
    """No Docker engine answers and the lab may not start one."""


def existing_client() -> docker.DockerClient | None:
    """A client for an engine that already answers; never starts one."""
    return _ping()


def _ping() -> docker.DockerClient | None:
    try:
        client = docker.from_env(timeout=CLIENT_TIMEOUT)
        client.ping()
    except (docker.errors.DockerException, OSError):
        return None
    return client


def _may_provision() -> bool:
    return os.geteuid() == 0 and Path("/etc/debian_version").exists()


def connect(paths: LabPaths, *, report: Report = lambda _msg: None) -> docker.DockerClient:
    """A client for an engine that answers; start Debian's dockerd if allowed and needed."""
    client = _ping()
    if client is not None:
        return client
    if os.environ.get("DOCKER_HOST") or not _may_provision():
        raise EngineUnavailable(
            "no Docker engine answers (DOCKER_HOST="
            f"{os.environ.get('DOCKER_HOST', 'unset, so unix:///var/run/docker.sock')}). "
            "Start one (e.g. `sudo systemctl start docker`), or run `hil lab up` as root on "
            "Debian and it installs docker.io and starts dockerd itself."
        )
    if shutil.which("dockerd") is None:
        report("installing docker.io (apt-get)")
        _apt_install("docker.io", paths.dockerd_log)
    report("starting dockerd")
    _start_dockerd(paths)
    deadline = time.monotonic() + ENGINE_START_TIMEOUT
    while time.monotonic() < deadline:
        client = _ping()
        if client is not None:
            return client
        time.sleep(0.5)
    raise InfrastructureError(
        f"dockerd did not answer within {ENGINE_START_TIMEOUT:.0f}s; see {paths.dockerd_log}"
    )


def _apt_install(package: str, log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with log.open("ab") as out:
        for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", package]):
            rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                timeout=APT_TIMEOUT, check=False).returncode
            if rc != 0:
                raise EngineUnavailable(f"`{' '.join(argv)}` failed (exit {rc}); see {log}. "
                                        f"Install {package} yourself and retry.")


def _start_dockerd(paths: LabPaths) -> None:
    paths.dockerd_log.parent.mkdir(parents=True, exist_ok=True)
    with paths.dockerd_log.open("ab") as out:
        proc = subprocess.Popen(["dockerd"], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    paths.dockerd_pid.write_text(f"{proc.pid}\n")


def _our_dockerd(paths: LabPaths) -> int | None:
    """The pid of the dockerd we started, if it still runs."""
    try:
        pid = int(paths.dockerd_pid.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except (OSError, ValueError):
        return None
    return pid if os.path.basename(cmdline) == b"dockerd" else None


def stop_engine(paths: LabPaths) -> bool:
    """Stop the dockerd this lab started; False when we started none."""
    pid = _our_dockerd(paths)
    paths.dockerd_pid.unlink(missing_ok=True)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + ENGINE_STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.2)
    raise InfrastructureError(f"dockerd (pid {pid}) did not stop within {ENGINE_STOP_TIMEOUT:.0f}s")
