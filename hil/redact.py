"""Keep secrets out of logs, reports and gate.json.

Known secret values (resolved console passwords, tokens) are registered at run
time and replaced wherever text leaves the harness; PEM private key blocks and
common token shapes are masked whether registered or not.
"""

from __future__ import annotations

import re
import threading

MASK = "***REDACTED***"

_PEM_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S
)
_TOKEN_PATTERNS = [
    re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key)(\s*[=:]\s*)(\S+)"),
    re.compile(r"AKIA[0-9A-Z]{16}"),
]

_known: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Remember a secret value so that it is masked wherever it appears."""
    if value and len(value) >= 4:
        with _lock:
            _known.add(value)


def redact(text: str) -> str:
    if not text:
        return text
    out = _PEM_KEY.sub("-----BEGIN PRIVATE KEY-----" + MASK + "-----END PRIVATE KEY-----", text)
    out = _TOKEN_PATTERNS[0].sub(lambda m: m.group(1) + m.group(2) + MASK, out)
    out = _TOKEN_PATTERNS[1].sub(MASK, out)
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        out = out.replace(value, MASK)
    return out
