"""Commands on an open SSH connection, side by side in one run on the same hub (issue 14, item 3).

    .venv/bin/python bench/command_path.py --device hub-01 [--devices devices.slot-1.yaml] [-n 300]

Paths measured, in interleaved rounds (each round measures every path once, so load on the
machine hits all of them alike), command `true` on an already open, authenticated connection:

- floor: a bare persistent channel (paramiko, TCP_NODELAY) running `sh`; one line written,
  one answer read (`echo`): the least a command can cost over a kept channel;
- harness: ``SshConnection.run(["true"])`` - the harness's command path (persistent shell,
  framed stdout/stderr/exit status, a step per command, secrets redacted);
- harness-exec: the same with ``persistent=False`` (an exec channel per command, as before);
- paramiko exec: bare paramiko ``exec_command`` on a TCP_NODELAY socket, waiting for exit and EOF;
- labgrid SSHDriver ``run_check`` (OpenSSH with a ControlMaster).

paramiko (bare) and labgrid run in the benchmark's OWN venv (bench/.venv-cmd, made on first
use with ``pip install labgrid paramiko``), not in the harness's environment. Also measured:
`/bin/true` (a fork and exec on the hub) through the floor and the harness.

The budget (issue 14): the harness's p50 at most 2x the floor's p50, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH_VENV = ROOT / "bench" / ".venv-cmd"

PEER_SCRIPT = textwrap.dedent("""\
    import json, socket, sys, time
    kind, host, port, user, key, known, n = sys.argv[1:8]
    n = int(n)
    out = []
    if kind == "paramiko":
        import paramiko
        s = socket.create_connection((host, int(port)))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = paramiko.SSHClient()
        c.load_host_keys(known)
        c.set_missing_host_key_policy(paramiko.RejectPolicy())
        c.connect(host, int(port), user, key_filename=key, sock=s, allow_agent=False, look_for_keys=False)
        t = c.get_transport()
        def one():
            ch = t.open_session()
            ch.exec_command("true")
            while not (ch.exit_status_ready() and ch.eof_received):
                ch.status_event.wait(0.01)
                while ch.recv_ready():
                    ch.recv(65536)
            ch.recv_exit_status()
            ch.close()
        one()
    else:
        from labgrid import Target
        from labgrid.driver import SSHDriver
        from labgrid.resource import NetworkService
        tg = Target("hub")
        NetworkService(tg, name=None, address=host, username=user, port=int(port))
        d = SSHDriver(tg, name=None, keyfile=key)
        tg.activate(d)
        def one():
            d.run_check("true")
        one()
    for _ in range(n):
        t0 = time.perf_counter()
        one()
        out.append((time.perf_counter() - t0) * 1000)
    print(json.dumps(out))
    """)


def ensure_bench_venv() -> Path:
    py = BENCH_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "labgrid", "paramiko"], check=True)
    return py


def peer(py: Path, kind: str, ep: object, n: int) -> list[float]:
    e = ep  # hil.inventory.SshEndpoint
    args = [str(py), "-c", PEER_SCRIPT, kind, e.host, str(e.port), e.user,  # type: ignore[attr-defined]
            str(e.key_file), str(e.known_hosts), str(n)]  # type: ignore[attr-defined]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-2000:]}")
    return [float(x) for x in json.loads(proc.stdout.strip().splitlines()[-1])]


class Floor:
    """A bare persistent `sh` channel: write a line, read the answer."""

    def __init__(self, transport: object) -> None:
        self.chan = transport.open_session()  # type: ignore[attr-defined]
        self.chan.exec_command("exec sh")

    def one(self, line: bytes, marker: bytes) -> None:
        self.chan.sendall(line)
        got = b""
        while not got.endswith(marker):
            got += self.chan.recv(65536)


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default=os.environ.get("HIL_DEVICES", str(ROOT / "devices.yaml")))
    ap.add_argument("--device", default="hub-01")
    ap.add_argument("-n", type=int, default=300, help="commands per path (over all rounds)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args(argv)

    from hil.drivers.ssh import SshConnection
    from hil.inventory import load_inventory

    inv = load_inventory(Path(args.devices))
    dev = inv.devices[args.device]
    py = ensure_bench_venv()
    per_round = max(1, args.n // args.rounds)
    samples: dict[str, list[float]] = {k: [] for k in (
        "floor (persistent sh, echo)", "harness run(['true'])", "harness, exec channels (persistent=False)",
        "paramiko exec_command (TCP_NODELAY)", "labgrid SSHDriver run_check", "floor, /bin/true (fork+exec)",
        "harness run(['/bin/true'])")}
    with SshConnection(dev.name, dev.ssh, inv.timeouts) as harness, \
            SshConnection(dev.name, dev.ssh, inv.timeouts, persistent=False) as exec_only:
        floor = Floor(harness.transport)
        harness.run(["true"])  # the thread's shell is open before timing
        exec_only.run(["true"])
        for _ in range(args.rounds):
            for _ in range(per_round):
                t0 = time.perf_counter()
                floor.one(b"echo\n", b"\n")
                samples["floor (persistent sh, echo)"].append((time.perf_counter() - t0) * 1000)
            for _ in range(per_round):
                t0 = time.perf_counter()
                floor.one(b"/bin/true; echo\n", b"\n")
                samples["floor, /bin/true (fork+exec)"].append((time.perf_counter() - t0) * 1000)
            for _ in range(per_round):
                t0 = time.perf_counter()
                harness.run(["true"])
                samples["harness run(['true'])"].append((time.perf_counter() - t0) * 1000)
            for _ in range(per_round):
                t0 = time.perf_counter()
                harness.run(["/bin/true"])
                samples["harness run(['/bin/true'])"].append((time.perf_counter() - t0) * 1000)
            for _ in range(per_round):
                t0 = time.perf_counter()
                exec_only.run(["true"])
                samples["harness, exec channels (persistent=False)"].append((time.perf_counter() - t0) * 1000)
            samples["paramiko exec_command (TCP_NODELAY)"] += peer(py, "paramiko", dev.ssh, per_round)
            samples["labgrid SSHDriver run_check"] += peer(py, "labgrid", dev.ssh, per_round)
    floor_p50 = statistics.median(samples["floor (persistent sh, echo)"])
    rows = []
    print(f"{args.device}: command on an open connection, {args.rounds} interleaved rounds "
          f"(load average {os.getloadavg()[0]:.2f})")
    print(f"{'path':45} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'x floor':>8}")
    for name, xs in samples.items():
        p50 = statistics.median(xs)
        rows.append({"path": name, "n": len(xs), "p50_ms": round(p50, 3), "p99_ms": round(pct(xs, 0.99), 3),
                     "x_floor": round(p50 / floor_p50, 2)})
        print(f"{name:45} {len(xs):5d} {p50:8.3f} {pct(xs, 0.99):8.3f} {p50 / floor_p50:8.2f}")
    ratio = statistics.median(samples["harness run(['true'])"]) / floor_p50
    print(f"budget: harness p50 <= 2x the floor's: {ratio:.2f}x -> {'met' if ratio <= 2 else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps({"device": args.device, "rows": rows, "ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
