"""Keep secrets out of logs, reports and gate.json.

Known secret values (resolved console passwords, tokens) are registered at run
time and replaced wherever text leaves the harness, whatever their length (a
3-character PDU password is masked too, at the price of masking the same three
characters anywhere else); PEM private key blocks and common token shapes are
masked whether registered or not. Structured output (JSON) is redacted value by
value (``redact_tree``): masking inside its text could break its syntax.
"""

from __future__ import annotations

import re
import threading
from typing import Any

MASK = "***REDACTED***"

_PEM_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S
)
_TOKEN_PATTERNS = [
    re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key)(\s*[=:]\s*)(\S+)"),
    re.compile(r"AKIA[0-9A-Z]{16}"),
    re.compile(r"(?i)(bearer\s+)([A-Za-z0-9._~+/=-]{8,})"),
]
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")

_known: set[str] = set()
_known_re: re.Pattern[str] | None = None
_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Remember a secret value so that it is masked wherever it appears (any length but empty)."""
    global _known_re
    if not value:
        return
    with _lock:
        if value not in _known:
            _known.add(value)
            _known_re = None


def _known_pattern() -> re.Pattern[str] | None:
    """One pass over the text for all known secrets, longest first; a mask already in the text
    is matched first and kept, so a short secret that occurs in MASK does not mangle it."""
    global _known_re
    with _lock:
        if _known_re is None and _known:
            values = sorted(_known, key=len, reverse=True)
            _known_re = re.compile(f"({re.escape(MASK)})|" + "|".join(re.escape(v) for v in values))
        return _known_re


def redact(text: str) -> str:
    if not text:
        return text
    out = _PEM_KEY.sub("-----BEGIN PRIVATE KEY-----" + MASK + "-----END PRIVATE KEY-----", text)
    out = _TOKEN_PATTERNS[0].sub(lambda m: m.group(1) + m.group(2) + MASK, out)
    out = _TOKEN_PATTERNS[1].sub(MASK, out)
    out = _TOKEN_PATTERNS[2].sub(lambda m: m.group(1) + MASK, out)
    known = _known_pattern()
    if known is not None:
        out = known.sub(lambda m: m.group(1) or MASK, out)
    return out


def redact_tree(node: Any) -> Any:
    """``redact`` on every string of a JSON-like tree (keys included); other values unchanged."""
    if isinstance(node, str):
        return redact(node)
    if isinstance(node, dict):
        return {redact(k) if isinstance(k, str) else k: redact_tree(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [redact_tree(v) for v in node]
    return node


def redact_bytes(data: bytes) -> bytes:
    """``redact`` for file contents: UTF-8 text is redacted, other bytes pass unchanged."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    return redact(text).encode("utf-8")


class StreamRedactor:
    """Redacts a text stream (a console capture) line by line, as it arrives.

    A secret split across two reads is still whole in its line, and the lines of a PEM
    key block are masked from BEGIN to END. A partial last line is held back until its
    newline or ``flush()``.
    """

    def __init__(self) -> None:
        self._tail = ""
        self._in_key = False

    def feed(self, text: str) -> str:
        self._tail += text
        lines = self._tail.split("\n")
        self._tail = lines.pop()
        return "".join(self._line(line) + "\n" for line in lines)

    def flush(self) -> str:
        tail, self._tail = self._tail, ""
        return self._line(tail) if tail else ""

    def _line(self, line: str) -> str:
        if self._in_key:
            end = _PEM_END.search(line)
            if end is None:
                return ""
            self._in_key = False
            return redact(line[end.end():])
        begin = _PEM_BEGIN.search(line)
        if begin and not _PEM_END.search(line, begin.end()):
            self._in_key = True
            return redact(line[:begin.start()]) + "-----BEGIN PRIVATE KEY-----" + MASK
        return redact(line)
