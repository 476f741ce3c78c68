"""Hub health: is this hub fit to be handed to a test?

``check_health`` runs a handful of read-only commands over any ``Shell`` and returns
evidence (``HealthReport``); it never asserts. The parsers are pure functions so
that they are unit-tested on recorded outputs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hil.drivers.base import CommandResult, Shell
from hil.errors import HilError
from hil.inventory import Expectations
from hil.steps import step

MAX_CLOCK_SKEW_S = 5.0
"""How far the hub's clock may be from the harness's before the hub counts as unhealthy."""

GREENGRASS_CLI = "/greengrass/v2/bin/greengrass-cli"


@dataclass
class HealthReport:
    """Evidence about one hub; ``problems`` is empty when the hub is healthy."""

    device: str
    channel: str = "ssh"
    clock_skew_s: float | None = None
    free_disk_mb: int | None = None
    free_mem_mb: int | None = None
    nucleus: str | None = None
    """"cli" (greengrass-cli answered), "process" (only the process exists) or None."""
    os_release: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    @property
    def os_version(self) -> str | None:
        return self.os_release.get("PRETTY_NAME")

    def summary(self) -> str:
        return "healthy" if self.healthy else "; ".join(self.problems)


# -- parsers (pure) -------------------------------------------------------------

def parse_epoch(stdout: str) -> float:
    text = stdout.strip()
    if not re.fullmatch(r"\d+(\.\d+)?", text):
        raise ValueError(f"not an epoch time: {text[:60]!r}")
    return float(text)


def parse_df_free_mb(stdout: str) -> int:
    """Available MiB of the first filesystem in ``df -Pm`` output."""
    lines = [ln for ln in stdout.strip().splitlines() if ln.strip()]
    if len(lines) < 2:
        raise ValueError(f"unexpected df output: {stdout[:80]!r}")
    cols = lines[1].split()
    # POSIX format: Filesystem 1M-blocks Used Available Capacity Mounted-on
    if len(cols) < 6 or not cols[3].isdigit():
        raise ValueError(f"unexpected df line: {lines[1]!r}")
    return int(cols[3])


def parse_meminfo_available_mb(stdout: str) -> int:
    m = re.search(r"^MemAvailable:\s+(\d+)\s+kB", stdout, re.M)
    if not m:
        raise ValueError("no MemAvailable in /proc/meminfo")
    return int(m.group(1)) // 1024


def parse_os_release(stdout: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        if "=" not in line or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip().strip('"').strip("'")
    return out


# -- the check ---------------------------------------------------------------------

def _run(shell: Shell, argv: list[str], timeout: float, *, sudo: bool = False) -> CommandResult | None:
    try:
        return shell.run(argv, timeout=timeout, sudo=sudo)
    except HilError:
        return None


def check_health(shell: Shell, expect: Expectations, *, timeout: float,
                 max_clock_skew: float = MAX_CLOCK_SKEW_S,
                 wall_clock: Callable[[], float] = time.time) -> HealthReport:
    """Clock, disk, memory and nucleus of one hub, as evidence."""
    rep = HealthReport(device=shell.device)
    with step("health check", device=shell.device) as st:
        before = wall_clock()
        res = _run(shell, ["date", "+%s"], timeout)
        after = wall_clock()
        if res is not None:
            rep.channel = res.channel  # which path served the check: SSH, or the console
        try:
            if res is None or not res.ok:
                raise ValueError("`date +%s` failed")
            rep.clock_skew_s = parse_epoch(res.stdout) - (before + after) / 2
            # `date +%s` truncates to whole seconds: allow one second of it
            if abs(rep.clock_skew_s) > max_clock_skew + 1.0:
                rep.problems.append(f"clock is {rep.clock_skew_s:+.0f}s off the harness clock "
                                    f"(allowed {max_clock_skew:.0f}s)")
        except ValueError as exc:
            rep.problems.append(f"clock: {exc}")

        res = _run(shell, ["df", "-Pm", "/"], timeout)
        try:
            if res is None or not res.ok:
                raise ValueError("`df -Pm /` failed")
            rep.free_disk_mb = parse_df_free_mb(res.stdout)
            if rep.free_disk_mb < expect.min_free_disk_mb:
                rep.problems.append(f"disk: {rep.free_disk_mb} MiB free on / "
                                    f"(need {expect.min_free_disk_mb})")
        except ValueError as exc:
            rep.problems.append(f"disk: {exc}")

        res = _run(shell, ["cat", "/proc/meminfo", "/etc/os-release"], timeout)
        try:
            if res is None or not res.ok:
                raise ValueError("cannot read /proc/meminfo")
            rep.free_mem_mb = parse_meminfo_available_mb(res.stdout)
            rep.os_release = parse_os_release(res.stdout)  # meminfo lines have no "="
            if rep.free_mem_mb < expect.min_free_mem_mb:
                rep.problems.append(f"memory: {rep.free_mem_mb} MiB available "
                                    f"(need {expect.min_free_mem_mb})")
        except ValueError as exc:
            rep.problems.append(f"memory: {exc}")

        res = _run(shell, [GREENGRASS_CLI, "component", "list"], timeout, sudo=True)
        if res is not None and res.ok:
            rep.nucleus = "cli"
        else:
            # the CLI can be slow or absent while the nucleus itself runs; the brackets
            # keep pgrep from matching a wrapping shell's own command line
            res = _run(shell, ["pgrep", "-f", "[g]reengrass|[n]ucleus"], timeout)
            if res is not None and res.ok and res.stdout.strip():
                rep.nucleus = "process"
            else:
                rep.problems.append("nucleus: greengrass-cli does not answer and no nucleus process runs")
        st.attach("health", rep.summary())
        st.record(rep.healthy)
    return rep
