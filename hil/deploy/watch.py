"""Waiting on the nucleus: a deployment to reach a terminal status, components to stay stable.

Both loops have a deadline and say what they waited for. Clock and sleep are
parameters so the logic runs on recorded outputs in unit tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from hil.drivers.greengrass import (
    STABLE_STATES,
    ComponentState,
    DeploymentNotFound,
    DeploymentStatus,
    Greengrass,
)
from hil.errors import ProductError

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class DeploymentTimeout(ProductError):
    """The nucleus did not finish a deployment before the deadline."""


def wait_for_terminal(gg: Greengrass, deployment_id: str, timeout: float, *, poll: float = 1.0,
                      clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> DeploymentStatus:
    """Poll `deployment status` until SUCCEEDED, FAILED or CANCELED."""
    deadline = clock() + timeout
    last: DeploymentStatus | None = None
    misses = 0
    while True:
        try:
            last = gg.deployment_status(deployment_id)
            if last.status.terminal:
                return last
        except DeploymentNotFound:
            # a just-submitted id can take a moment to be registered; more misses are real
            misses += 1
            if misses > 3:
                raise
        if clock() >= deadline:
            seen = last.status.value if last else "not found"
            raise DeploymentTimeout(f"{gg.device}: deployment {deployment_id} not finished after "
                                    f"{timeout:.0f}s (last status: {seen})")
        sleep(poll)


@dataclass
class Stability:
    """What the settle watch saw."""

    ok: bool
    states: dict[str, ComponentState | None]
    """Last state seen per component (None: not listed)."""
    history: dict[str, list[ComponentState | None]] = field(default_factory=dict)
    problem: str | None = None
    samples: int = 0


def watch_stable(gg: Greengrass, expected: Mapping[str, str], period: float, *, poll: float = 1.0,
                 clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> Stability:
    """Check that every component of ``expected`` (name -> version) stays RUNNING/FINISHED for ``period``.

    Samples `component list` at the start, every ``poll`` seconds, and once at the end.
    Stops at the first sample that shows a component absent, at another version, or
    in any other state (a Run-type component can exit non-zero after the deployment
    already SUCCEEDED).
    """
    end = clock() + period
    history: dict[str, list[ComponentState | None]] = {n: [] for n in expected}
    states: dict[str, ComponentState | None] = dict.fromkeys(expected)
    samples = 0
    while True:
        listed = {c.name: c for c in gg.component_list()}
        samples += 1
        for name, version in expected.items():
            comp = listed.get(name)
            state = comp.state if comp else None
            states[name] = state
            if not history[name] or history[name][-1] != state:
                history[name].append(state)
            problem = None
            if comp is None:
                problem = f"{name} is not in the component list"
            elif comp.version != version:
                problem = f"{name} is at version {comp.version}, expected {version}"
            elif comp.state not in STABLE_STATES:
                problem = f"{name} went {comp.state.value} while settling"
            if problem:
                return Stability(False, states, history, f"{gg.device}: {problem}", samples)
        now = clock()
        if now >= end:
            return Stability(True, states, history, None, samples)
        sleep(min(poll, end - now))
