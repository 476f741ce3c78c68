"""SIGTERM/SIGINT handling (hil.cancel) in real child processes: first signal, copies of it, a
second signal, the end of the grace period."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from hil import cancel
from hil.timeouts import Timeouts

CHILD = textwrap.dedent("""
    import os, signal, sys, time
    from hil import cancel
    cancel.install(grace=float(sys.argv[1]))
    try:
        print("ready", flush=True)
        time.sleep(30)
        print("never interrupted", flush=True)
    except cancel.Cancelled as exc:
        print(f"cancelled {exc.signum} left {cancel.remaining():.1f}", flush=True)
        try:
            cancel.check()
        except cancel.Cancelled:
            print("no new work", flush=True)
        # clean-up that takes a while: a copy of the signal must not stop it, a second one does
        time.sleep(float(sys.argv[2]))
        print("cleaned up", flush=True)
        sys.exit(cancel.exit_status())
""")


def _child(grace: float, cleanup: float) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(grace), str(cleanup)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline() == "ready\n"
    return p


def test_first_signal_cancels_and_a_copy_of_it_is_ignored() -> None:
    p = _child(grace=10, cleanup=1.5)
    p.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    p.send_signal(signal.SIGTERM)  # the process group's copy / the controller's forward
    out, err = p.communicate(timeout=20)
    assert out.splitlines() == ["cancelled 15 left 10.0", "no new work", "cleaned up"], out + err
    assert p.returncode == 143
    assert "SIGTERM: stopping" in err


def test_a_second_signal_aborts_at_once() -> None:
    p = _child(grace=10, cleanup=20)
    p.send_signal(signal.SIGINT)
    time.sleep(cancel.REPEAT_WINDOW + 0.3)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    assert time.monotonic() - t0 < 2
    assert "cleaned up" not in out and "aborting at once" in err
    assert p.returncode == 128 + signal.SIGINT  # the first signal decides the status


def test_the_grace_period_ends_a_slow_clean_up() -> None:
    p = _child(grace=1.5, cleanup=20)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    took = time.monotonic() - t0
    assert 1.4 < took < 3.5, took
    assert "cleaned up" not in out and "grace period (1.5s) is over" in err
    assert p.returncode == 143


def test_bounded_caps_waits_to_what_the_grace_period_leaves(monkeypatch: pytest.MonkeyPatch) -> None:
    t = Timeouts(deployment=300, settle=10, ssh_command=60, cancel_grace=30)
    assert cancel.bounded(t) is t  # not cancelled: unchanged
    monkeypatch.setattr(cancel, "_state", cancel._State(signum=15, at=time.monotonic(),
                                                          deadline=time.monotonic() + 20, grace=30))
    b = cancel.bounded(t)
    assert b.deployment <= 20 - 30 * cancel.FINISH_RESERVE + 0.01
    assert b.settle == 10 and b.ssh_command <= b.deployment
    with pytest.raises(cancel.Cancelled):
        cancel.check()


def test_children_are_found_for_forwarding() -> None:
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(10)"])
    try:
        assert p.pid in cancel.child_pids()
    finally:
        p.kill()
        p.wait()
    assert os.getpid() not in cancel.child_pids()
