"""Security check labels: the OWASP IoT Top 10 (2018) item, the ISVS category, the link."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import pytest

from hil_pytest.allure_labels import CRITICAL, labels

OWASP_IOT_TOP10_URL = "https://owasp.org/www-project-internet-of-things/"
"""The OWASP Internet of Things project page, which carries the 2018 Top 10."""

ITEMS: dict[str, str] = {
    "I1": "Weak, guessable or hardcoded passwords",
    "I2": "Insecure network services",
    "I3": "Insecure ecosystem interfaces",
    "I4": "Lack of secure update mechanism",
    "I5": "Use of insecure or outdated components",
    "I6": "Insufficient privacy protection",
    "I7": "Insecure data transfer and storage",
    "I9": "Insecure default settings",
    "I10": "Lack of physical hardening",
}

ISVS: dict[str, str] = {
    "V3": "ISVS V3 Software Platform",
    "V4": "ISVS V4 Communication",
    "V5": "ISVS V5 Hardware Platform",
}
"""ISVS 1.0 chapters. Only the chapter is claimed: no single requirement number maps
cleanly enough to these checks to be worth asserting."""

F = TypeVar("F", bound=Callable[..., Any])


def owasp(item: str, *, isvs: str | None = None, severity: str = CRITICAL) -> Callable[[F], F]:
    """Mark a test as a security check for OWASP IoT ``item`` (e.g. "I1"), with Allure labels."""
    title = ITEMS[item]
    tags = [item] + ([ISVS[isvs]] if isvs else [])
    extra = {"owasp_iot": item, **({"isvs": ISVS[isvs]} if isvs else {})}
    allure_deco = labels("Security", f"{item} {title}", severity, tags=tags, extra=extra,
                         links=[(OWASP_IOT_TOP10_URL, f"OWASP IoT Top 10 2018: {item}")])

    def deco(fn: F) -> F:
        return cast(F, pytest.mark.security(allure_deco(fn)))

    return deco
