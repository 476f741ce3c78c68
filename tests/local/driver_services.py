"""Real local services for the driver tests: a temporary user, an sshd, a getty console.

Everything binds to 127.0.0.1 on a free port, lives in tmp_path, and is removed
afterwards (the user with its home, its processes, its sudoers entry). Needs root.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hil.inventory import SshEndpoint

SSHD = "/usr/sbin/sshd"
AGETTY = "/sbin/agetty"


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("local driver tests create a user and start sshd: run as root")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s") \
                    from None
            time.sleep(0.02)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass(frozen=True)
class TempUser:
    name: str
    password: str


@pytest.fixture(scope="session")
def temp_user() -> Iterator[TempUser]:
    needs_root()
    if shutil.which("sudo") is None:
        pytest.skip("sudo is not installed (apt-get install sudo)")
    name = "hilt" + secrets.token_hex(3)
    password = "pw-" + secrets.token_urlsafe(12)
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
    sudoers = Path("/etc/sudoers.d") / name
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n".encode(), check=True)
        home = Path("/home") / name
        for rc in (".bashrc", ".profile"):  # empty rc files: no per-command startup cost
            (home / rc).write_text("")
        sudoers.parent.mkdir(exist_ok=True)
        sudoers.write_text(f"{name} ALL=(root) NOPASSWD: /usr/bin/id\n")
        sudoers.chmod(0o440)
        yield TempUser(name, password)
    finally:
        sudoers.unlink(missing_ok=True)
        _kill_user_processes(name)
        subprocess.run(["userdel", "-r", name], check=False, capture_output=True)


def _kill_user_processes(name: str) -> None:
    """Processes our sessions left (login shells); killed one by one, by pid."""
    for _ in range(20):
        out = subprocess.run(["ps", "-o", "pid=", "-u", name], capture_output=True, text=True,
                             check=False).stdout.split()
        if not out:
            return
        for pid in out:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.05)


@dataclass
class LocalSshd:
    endpoint: SshEndpoint
    proc: subprocess.Popen[bytes]
    dir: Path
    host_key: Path

    def session_pids(self) -> list[int]:
        """Per-connection sshd processes (children of the listener)."""
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True,
                             text=True, check=False).stdout.split()
        return [int(p) for p in out]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture
def local_sshd(temp_user: TempUser, tmp_path: Path) -> Iterator[LocalSshd]:
    d = tmp_path / "sshd"
    d.mkdir()
    host_key, client_key = d / "host_ed25519", d / "client_ed25519"
    _keygen(host_key)
    _keygen(client_key)
    # sshd reads authorized_keys as the user, so it lives in the user's home, not in tmp_path.
    auth = Path("/home") / temp_user.name / ".ssh" / "authorized_keys"
    auth.parent.mkdir(mode=0o700, exist_ok=True)
    auth.write_text((d / "client_ed25519.pub").read_text())
    shutil.chown(auth.parent, temp_user.name, temp_user.name)
    shutil.chown(auth, temp_user.name, temp_user.name)
    port = free_port()
    pub = (d / "host_ed25519.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    config = d / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {auth}\nStrictModes no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n"
        f"AllowUsers {temp_user.name}\nUsePAM no\nPrintMotd no\n"
        "Subsystem sftp internal-sftp\nLogLevel VERBOSE\n")
    Path("/run/sshd").mkdir(exist_ok=True)
    log = open(d / "sshd.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config), "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, 10, "sshd")
        yield LocalSshd(
            endpoint=SshEndpoint(host="127.0.0.1", port=port, user=temp_user.name,
                                 key_file=client_key, known_hosts=d / "known_hosts"),
            proc=proc, dir=d, host_key=host_key)
    finally:
        stop(proc)
        log.close()


@dataclass
class LocalConsole:
    url: str
    port: int


@pytest.fixture
def local_console(temp_user: TempUser) -> Iterator[LocalConsole]:
    """A getty on a pty behind TCP, like ser2net in raw mode in front of a real serial port."""
    port = free_port()
    proc = subprocess.Popen(
        ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
         f"EXEC:{AGETTY} --noclear -L 115200 - vt100,pty,setsid,ctty,stderr,sane"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 10, "socat console")
        yield LocalConsole(url=f"socket://127.0.0.1:{port}", port=port)
    finally:
        stop(proc)
        _kill_user_processes(temp_user.name)
