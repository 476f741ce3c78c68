"""Write cases.json: every version x range below, judged by node-semver (PyPI ``node-semver``).

Run from the checkout with the dev extra installed, after adding versions or ranges:
``python tests/data/semver/make_cases.py``. Both semver copies must pass the result
(tests/unit/test_semver_table.py, tests/local/test_nucleus_semver.py), and a dev test
checks the committed expectations against node-semver again.
"""

from __future__ import annotations

import json
from pathlib import Path

import nodesemver

VERSIONS = [
    "0.0.1", "0.0.3", "0.0.4", "0.2.3", "0.2.9", "0.3.0", "1.0.0-0", "1.0.0-rc.1", "1.0.0", "1.0.1-beta",
    "1.2.2", "1.2.3-beta.2", "1.2.3-beta.4", "1.2.3", "1.2.9", "1.3.0", "1.9.9", "2.0.0-0", "2.0.0-rc.1",
    "2.0.0", "2.3.4", "2.3.5", "2.4.0", "3.0.0", "3.1.0-alpha", "10.0.0",
]
RANGES = [
    "1.2.3", "=1.2.3", ">1.2.3", ">=1.2.3", "<1.2.3", "<=1.2.3",
    ">1", ">=1", "<1", "<=1", ">1.2", ">=1.2", "<1.2", "<=1.2", ">= 1.0.0",
    "1.x", "1.2.x", "1.2.*", "*", "", "x",
    "~1", "~1.2", "~1.2.3", "~1.2.3-beta.2", "~0.2", "~>1.2",
    "^1.2.3", "^1.2.3-beta.2", "^0.2.3", "^0.0.3", "^0.0", "^0", "^1.x", "^0.0.x",
    "1.2.3 - 2.3.4", "1.2 - 2.3", "1.2.3 - 2", "* - 2.0.0",
    ">=1.0.0 <2.0.0", ">1.0.0-beta <2", ">=1.0.0-rc.1", ">=1.2.3-beta.2 <1.2.4", "<2.0.0-0",
    "1.x || >=3", "<1.0.0 || >=2.0.0", "^0.2.3 || ^1.2.3",
]


def main() -> None:
    rows = [json.dumps([v, r, bool(nodesemver.satisfies(v, r, loose=False))])
            for r in RANGES for v in VERSIONS]
    out = Path(__file__).with_name("cases.json")
    # one [version, range, satisfied] per line: a reviewer reads the table, a diff shows one case
    out.write_text("[\n" + ",\n".join(rows) + "\n]\n", encoding="utf-8")
    print(f"{len(rows)} cases -> {out}")


if __name__ == "__main__":
    main()
