"""One trivial device test that records when it started (bench/rack.py: time to first test)."""

from __future__ import annotations

import os
import time

from hil.hub import Hub


def test_first(hub: Hub) -> None:
    started = time.time()
    with open(os.environ["HIL_BENCH_STAMP"], "a") as f:
        f.write(f"{hub.name} {started}\n")
    assert hub.ssh.run(["true"]).ok
