"""The harness's own tests run in a random order (pytest-randomly, see README).

The pytest runs that tests start as their subject are another matter: they are scripted
scenarios ("power the hub off; the next test must find it recovered"), a user's run of
a rack, written in the order their steps happen. They run as a user's run does, in that
order: pytest-randomly is off in them (and only in them; it reads PYTEST_ADDOPTS at
start, which this process has passed).
"""

from __future__ import annotations

import os

_SCENARIO_ORDER = "-p no:randomly"
if _SCENARIO_ORDER not in os.environ.get("PYTEST_ADDOPTS", ""):
    os.environ["PYTEST_ADDOPTS"] = f"{os.environ.get('PYTEST_ADDOPTS', '')} {_SCENARIO_ORDER}".strip()
