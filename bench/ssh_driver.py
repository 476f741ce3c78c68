"""SSH driver figures: connect+auth, `true` round trip on an open connection, SFTP throughput.

    .venv/bin/python bench/ssh_driver.py                       # a throwaway sshd on 127.0.0.1 (root)
    .venv/bin/python bench/ssh_driver.py --devices devices.yaml --device hub-01   # the virtual lab

Budgets (issue 3): connect+auth < 50 ms, command p50 < 5 ms.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hil.drivers.ssh import SshConnection
from hil.inventory import SshEndpoint, load_inventory


@contextmanager
def throwaway_user() -> Iterator[str]:
    """A user with empty rc files: root's .bashrc (pyenv init...) costs ~0.4 s per command."""
    name = "hilb" + secrets.token_hex(3)
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", "-p", "*", name], check=True)
    try:
        for rc in (".bashrc", ".profile"):
            Path(f"/home/{name}/{rc}").write_text("")
        yield name
    finally:
        subprocess.run(["userdel", "-r", name], check=False, capture_output=True)


@contextmanager
def throwaway_sshd() -> Iterator[SshEndpoint]:
    with tempfile.TemporaryDirectory() as tmp, throwaway_user() as user:
        d = Path(tmp)
        for name in ("host", "client"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)],
                           check=True)
        auth = Path(f"/home/{user}/authorized_keys")
        auth.write_text((d / "client.pub").read_text())
        shutil.chown(auth, user, user)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        pub = (d / "host.pub").read_text().split()
        (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
        (d / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1\nHostKey {d / 'host'}\nPidFile {d / 'pid'}\n"
            f"AuthorizedKeysFile {auth}\nStrictModes no\nUsePAM no\n"
            "PermitRootLogin no\nPasswordAuthentication no\n"
            "Subsystem sftp internal-sftp\nPrintMotd no\n")
        Path("/run/sshd").mkdir(exist_ok=True)
        proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(d / "sshd_config"), "-p", str(port)])
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise TimeoutError("sshd did not start listening within 10 s") from None
                    time.sleep(0.02)
            yield SshEndpoint(host="127.0.0.1", port=port, user=user, key_file=d / "client",
                              known_hosts=d / "known_hosts")
        finally:
            proc.terminate()
            proc.wait(5)
            time.sleep(0.2)  # session processes exit after the listener; then userdel works


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def measure(ep: SshEndpoint, n_connect: int, n_cmd: int, mib: int) -> None:
    connects = []
    for _ in range(n_connect):
        c = SshConnection("bench", ep)
        t0 = time.perf_counter()
        c.connect()
        connects.append((time.perf_counter() - t0) * 1000)
        c.close()
    print(f"connect+auth      n={n_connect:<4} p50 {pct(connects, 50):6.1f} ms   "
          f"min {min(connects):6.1f} ms   max {max(connects):6.1f} ms")
    with SshConnection("bench", ep) as c:
        for _ in range(20):  # warm-up
            c.run(["true"])
        rtt = []
        for _ in range(n_cmd):
            t0 = time.perf_counter()
            c.run(["true"])
            rtt.append((time.perf_counter() - t0) * 1000)
        print(f"run(['true'])     n={n_cmd:<4} p50 {pct(rtt, 50):6.2f} ms   "
              f"p99 {pct(rtt, 99):6.2f} ms   mean {statistics.fmean(rtt):6.2f} ms")
        with tempfile.TemporaryDirectory() as tmp:
            src, back = Path(tmp) / "src", Path(tmp) / "back"
            src.write_bytes(os.urandom(mib * 1024 * 1024))
            remote = f"/tmp/hil-bench-{os.getpid()}"  # noqa: S108  (on the target, removed below)
            t0 = time.perf_counter()
            c.put(src, remote)
            put_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            c.get(remote, back)
            get_s = time.perf_counter() - t0
            c.run(["rm", "-f", remote])
            assert back.read_bytes() == src.read_bytes()
        print(f"sftp put {mib} MiB  {mib / put_s:6.0f} MiB/s   get {mib / get_s:6.0f} MiB/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=Path, help="inventory file (default: a throwaway local sshd)")
    ap.add_argument("--device", help="device name in the inventory")
    ap.add_argument("-n", type=int, default=300, help="command samples")
    ap.add_argument("--connects", type=int, default=20)
    ap.add_argument("--mib", type=int, default=32)
    args = ap.parse_args()
    if args.devices:
        inv = load_inventory(args.devices)
        dev = inv.devices[args.device] if args.device else next(iter(inv.devices.values()))
        print(f"target: {dev.name} {dev.ssh.host}:{dev.ssh.port}")
        measure(dev.ssh, args.connects, args.n, args.mib)
    else:
        with throwaway_sshd() as ep:
            print(f"target: throwaway sshd on 127.0.0.1:{ep.port}")
            measure(ep, args.connects, args.n, args.mib)


if __name__ == "__main__":
    main()
