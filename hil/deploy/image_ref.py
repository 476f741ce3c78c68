"""Container image references, checked against Docker's reference grammar before they reach a hub.

The grammar (github.com/distribution/reference, the one `docker pull` parses)::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] path        (at most 255 characters)
    domain     := host [ ":" port ]          host: DNS name, IPv4, or [IPv6]
    path       := component ( "/" component )*
    component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
    digest     := algorithm ":" hex          sha256 -> exactly 64 lower-case hex digits

A reference that passes can neither be read as an option (it starts with a letter or digit;
commands still get it after ``--``) nor smuggle shell or path syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_NAME = 255
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9A-Fa-f:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"^(?P<name>(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH}))"
                        rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$", re.ASCII)
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")


class ImageRefError(ValueError):
    """Not a reference `docker pull` accepts; the message says what is wrong."""


@dataclass(frozen=True)
class ImageRef:
    name: str
    tag: str | None
    digest: str | None

    @property
    def pinned(self) -> bool:
        """Named by content (``@sha256:...``): the hub runs exactly what was tested."""
        return self.digest is not None


def parse_image_ref(text: str) -> ImageRef:
    """The parts of ``text``; ImageRefError when it is not a valid reference."""
    if not text:
        raise ImageRefError("an image reference must be non-empty text")
    m = _REFERENCE.match(text)
    if m is None:
        raise ImageRefError(f"{text!r} is not an image reference (registry/name:tag or name@sha256:<64 hex>; "
                            "lower-case name, no spaces or shell characters)")
    if len(m["name"]) > MAX_NAME:
        raise ImageRefError(f"{text[:40]!r}...: the name is longer than {MAX_NAME} characters")
    digest = m["digest"]
    if digest is not None and digest.lower().startswith("sha256:") and not _SHA256.match(digest):
        raise ImageRefError(f"{text!r}: a sha256 digest is 64 lower-case hex digits")
    return ImageRef(m["name"], m["tag"], digest)


def image_ref_problem(text: object) -> str | None:
    """None when ``text`` is a valid reference, else what is wrong (anything may come from YAML)."""
    if not isinstance(text, str):
        return f"{text!r} is not text: an image reference is a string"
    try:
        parse_image_ref(text)
    except ImageRefError as exc:
        return str(exc)
    return None
