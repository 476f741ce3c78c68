"""SshConnection against a real sshd on 127.0.0.1 (no lab needed; run as root)."""
# ruff: noqa: F811  (pytest fixtures imported from driver_services are parameters by name)

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from driver_services import LocalSshd, TempUser, local_sshd, temp_user  # noqa: F401

from hil import steps
from hil.drivers.base import CommandFailed, Shell
from hil.drivers.ssh import SshConnection
from hil.errors import CommandTimeout, DeviceUnreachable, HostKeyMismatch
from hil.timeouts import Timeouts


@pytest.fixture(params=[True, False], ids=["persistent-shell", "exec-channels"])
def conn(local_sshd: LocalSshd, request: pytest.FixtureRequest) -> Iterator[SshConnection]:
    """Both command paths must behave the same (hil/drivers/ssh_shell.py)."""
    c = SshConnection("local", local_sshd.endpoint, persistent=request.param)
    c.connect()
    yield c
    c.close()


def test_odd_and_binary_output_and_fake_markers_come_back_whole(conn: SshConnection) -> None:
    # no final newline, bytes that are not UTF-8, NUL, CR, text that looks like a frame marker
    script = r"printf 'a\000b\377\r\nBdeadbeef00000000\nEdeadbeef00000000:0\nend'; printf 'x' >&2"
    r = conn.run(["sh", "-c", script])
    assert r.stdout == "a\x00b\ufffd\r\nBdeadbeef00000000\nEdeadbeef00000000:0\nend"
    assert (r.stderr, r.exit_status) == ("x", 0)
    assert conn.run(["printf", "%s", ""]).stdout == ""


def test_shell_state_does_not_leak_between_commands(conn: SshConnection) -> None:
    home = conn.run(["pwd"]).stdout
    assert conn.run(["cd", "/"]).exit_status == 0
    assert conn.run(["pwd"]).stdout == home
    assert conn.run(["exit", "7"]).exit_status == 7
    assert conn.run(["export", "HIL_X=1"]).exit_status == 0
    assert conn.run(["sh", "-c", "echo ${HIL_X:-unset}"]).stdout == "unset\n"


def test_a_stray_child_s_late_output_is_not_the_next_command_s(conn: SshConnection) -> None:
    conn.run(["sh", "-c", "(sleep 0.3; echo stray; echo stray >&2) &"])
    time.sleep(0.5)
    r = conn.run(["echo", "mine"])
    assert (r.stdout, r.stderr) == ("mine\n", "")


def test_a_command_reading_stdin_gets_only_its_own(conn: SshConnection) -> None:
    r = conn.run(["sh", "-c", "cat; echo after"], stdin="data\x01\n")
    assert r.stdout == "data\x01\nafter\n"
    assert conn.run(["sh", "-c", "read x; echo got:$x"]).stdout == "got:\n"  # EOF, not the next command
    big = "z" * 200_000  # over the persistent line's limit: an exec channel carries it
    assert conn.run(["wc", "-c"], stdin=big).stdout.strip() == "200000"


def test_run_exit_status_stdout_stderr(conn: SshConnection) -> None:
    assert isinstance(conn, Shell)
    r = conn.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.exit_status, r.stdout, r.stderr, r.channel) == (3, "out\n", "err\n", "ssh")
    assert r.argv == ("sh", "-c", "echo out; echo err >&2; exit 3")
    assert 0 < r.duration < 5
    with pytest.raises(CommandFailed, match="exited 3: err"):
        conn.run(["sh", "-c", "echo err >&2; exit 3"], check=True)


def test_arguments_are_not_reinterpreted_by_a_shell(conn: SshConnection) -> None:
    args = ["a b", "$HOME", "'q'", '"d"', "; rm -rf /", "*", ""]
    r = conn.run(["printf", "%s|", *args])
    assert r.stdout == "|".join(args) + "|"
    with pytest.raises(TypeError):
        conn.run("echo hi")  # a str is a Sequence[str]: refused at run time


def test_large_output_is_complete(conn: SshConnection) -> None:
    r = conn.run(["sh", "-c", "seq 1 400000; seq 1 1000 >&2"], timeout=30)
    assert r.exit_status == 0
    assert r.stdout.splitlines() == [str(i) for i in range(1, 400001)]
    assert len(r.stderr.splitlines()) == 1000


def test_stdin_is_sent_and_closed(conn: SshConnection) -> None:
    assert conn.run(["cat"], stdin="hello\nworld").stdout == "hello\nworld"
    assert conn.run(["cat"], timeout=5).stdout == ""  # EOF at once, no hang


def test_timeout_raises_and_connection_stays_usable(conn: SshConnection) -> None:
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"'sleep 5' did not finish within 0\.5s"):
        conn.run(["sleep", "5"], timeout=0.5)
    assert time.monotonic() - t0 < 2
    assert conn.run(["echo", "still here"]).stdout == "still here\n"
    assert conn.connects == 1


def test_every_command_is_a_step_with_status_and_output(conn: SshConnection) -> None:
    seen: list[steps.Step] = []

    def listener(event: str, st: steps.Step) -> None:
        if event == "stop":
            seen.append(st)

    steps.add_listener(listener)
    try:
        conn.run(["sh", "-c", "echo o; echo e >&2; exit 2"])
    finally:
        steps.remove_listener(listener)
    assert len(seen) == 1
    st = seen[0]
    assert st.device == "local" and "echo o" in st.title
    assert st.exit_status == 2 and st.duration is not None
    assert st.attachments == {"stdout": "o\n", "stderr": "e\n"}


def test_changed_host_key_is_refused(local_sshd: LocalSshd, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    pub = (tmp_path / "other.pub").read_text().split()
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{local_sshd.endpoint.port} {pub[0]} {pub[1]}\n")
    ep = local_sshd.endpoint.model_copy(update={"known_hosts": kh})
    with pytest.raises(HostKeyMismatch, match=r"CHANGED.*refusing to connect"):
        SshConnection("local", ep).connect()


def test_unknown_host_is_refused(local_sshd: LocalSshd, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    # The right key, but under another name (e.g. port 22): still not pinned for this endpoint.
    pub = (local_sshd.dir / "host_ed25519.pub").read_text().split()
    kh.write_text(f"127.0.0.1 {pub[0]} {pub[1]}\n")
    ep = local_sshd.endpoint.model_copy(update={"known_hosts": kh})
    with pytest.raises(HostKeyMismatch, match=r"is not in .*never trusts an unknown host key"):
        SshConnection("local", ep).connect()


def test_wrong_client_key_and_closed_port_are_unreachable(local_sshd: LocalSshd,
                                                          tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                   check=True)
    ep = local_sshd.endpoint.model_copy(update={"key_file": tmp_path / "k"})
    with pytest.raises(DeviceUnreachable, match="authentication as"):
        SshConnection("local", ep).connect()
    local_sshd.proc.terminate()
    local_sshd.proc.wait(5)
    with pytest.raises(DeviceUnreachable, match="no TCP connection"):
        SshConnection("local", local_sshd.endpoint).connect()


@pytest.mark.parametrize("pause", [0.0, 0.5])
def test_dropped_connection_is_reestablished_transparently(conn: SshConnection,
                                                           local_sshd: LocalSshd,
                                                           pause: float) -> None:
    assert conn.run(["echo", "one"]).stdout == "one\n"
    sessions = local_sshd.session_pids()
    assert len(sessions) == 1
    subprocess.run(["kill", str(sessions[0])], check=True)
    # pause 0: the next command may find the transport still "active" and fail at
    # open_session (retry path); pause 0.5: the transport is known dead (reconnect path).
    time.sleep(pause)
    assert conn.run(["echo", "two"]).stdout == "two\n"
    assert conn.connects == 2
    assert conn.alive()


def test_put_get_round_trip(conn: SshConnection, tmp_path: Path, temp_user: TempUser) -> None:
    src = tmp_path / "blob"
    src.write_bytes(os.urandom(6 * 1024 * 1024))
    remote = f"/home/{temp_user.name}/blob"
    conn.put(src, remote)
    remote_sum = conn.run(["sha256sum", remote]).stdout.split()[0]
    assert remote_sum == hashlib.sha256(src.read_bytes()).hexdigest()
    back = tmp_path / "back"
    conn.get(remote, back)
    assert back.read_bytes() == src.read_bytes()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    conn.put(empty, f"{remote}.0")
    conn.get(f"{remote}.0", tmp_path / "empty-back")
    assert (tmp_path / "empty-back").read_bytes() == b""


def test_sudo_is_non_interactive(conn: SshConnection) -> None:
    assert conn.run(["id", "-u"]).stdout.strip() != "0"
    assert conn.run(["id", "-u"], sudo=True).stdout.strip() == "0"
    # Not allowed by sudoers: sudo -n fails at once instead of waiting for a password.
    t0 = time.monotonic()
    r = conn.run(["true"], sudo=True, timeout=10)
    assert r.exit_status == 1 and "password is required" in r.stderr
    assert time.monotonic() - t0 < 5


def test_transport_is_the_pinned_connection(conn: SshConnection) -> None:
    t = conn.transport
    assert t.is_authenticated()
    chan = t.open_session()
    chan.exec_command("echo via-transport")
    assert chan.makefile("r").read() == b"via-transport\n"
    chan.close()


def test_sigkill_of_listener_leaves_no_hang(local_sshd: LocalSshd, conn: SshConnection) -> None:
    for pid in local_sshd.session_pids():
        os.kill(pid, signal.SIGKILL)
    local_sshd.proc.kill()
    local_sshd.proc.wait(5)
    t0 = time.monotonic()
    with pytest.raises(DeviceUnreachable):
        conn.run(["true"], timeout=3)
    assert time.monotonic() - t0 < 5


# -- transfers: deadlines, a frozen peer, the connection stays usable --------------------------

def _blob(tmp_path: Path, mib: int) -> Path:
    src = tmp_path / f"blob-{mib}"
    with src.open("wb") as f:
        f.truncate(mib * 1024 * 1024)  # sparse: cheap to make, real bytes on the wire
    return src


def test_transfer_past_its_deadline_fails(local_sshd: LocalSshd, tmp_path: Path, temp_user: TempUser) -> None:
    # a deadline no real transfer can meet: base 0.05 s, and 1 TB/s as the minimum rate
    tight = Timeouts(transfer_base=0.05, transfer_min_rate=1e12)
    with SshConnection("local", local_sshd.endpoint, tight) as c:
        t0 = time.monotonic()
        with pytest.raises(CommandTimeout, match=r"upload of .* did not finish within 0s"):
            c.put(_blob(tmp_path, 64), f"/home/{temp_user.name}/big")
        assert time.monotonic() - t0 < 2
        assert c.run(["true"]).ok  # the connection is still good for commands


def test_a_frozen_peer_fails_the_transfer_within_the_dead_peer_bound(
        local_sshd: LocalSshd, tmp_path: Path, temp_user: TempUser) -> None:
    dead = Timeouts(ssh_dead_peer=1.5)
    src = _blob(tmp_path, 512)
    with SshConnection("local", local_sshd.endpoint, dead) as c:
        frozen: list[int] = []
        errors: list[BaseException] = []

        def upload() -> None:
            try:
                c.put(src, f"/home/{temp_user.name}/big")
            except BaseException as exc:
                errors.append(exc)

        th = threading.Thread(target=upload)
        th.start()
        time.sleep(0.3)  # the upload is under way
        for pid in _descendants(local_sshd.proc.pid):  # the hub "loses power"
            os.kill(pid, signal.SIGSTOP)
            frozen.append(pid)
        t0 = time.monotonic()
        try:
            th.join(timeout=30)
            gave_up = time.monotonic() - t0
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        assert not th.is_alive(), "the upload hung"
        [err] = errors
        assert isinstance(err, DeviceUnreachable), err
        assert "no progress for 1.5s" in str(err)
        print(f"\nfrozen peer: the upload gave up after {gave_up:.2f}s (ssh_dead_peer 1.5s)")
        assert gave_up < 1.5 + 1.0


def test_commands_run_while_a_transfer_is_under_way(conn: SshConnection, tmp_path: Path,
                                                    temp_user: TempUser) -> None:
    src = _blob(tmp_path, 400)
    done = threading.Event()

    def upload() -> None:
        conn.put(src, f"/home/{temp_user.name}/big")
        done.set()

    th = threading.Thread(target=upload)
    th.start()
    time.sleep(0.1)
    assert not done.is_set(), "the upload was too quick to overlap with anything"
    assert conn.run(["echo", "meanwhile"], timeout=10).stdout == "meanwhile\n"
    overlapped = not done.is_set()
    th.join(60)
    assert overlapped, "the command waited for the whole upload (connection lock held across it)"
    assert done.is_set()


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        kids = subprocess.run(["ps", "-o", "pid=", "--ppid", str(p)], capture_output=True, text=True,
                              check=False).stdout.split()
        out += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return out
