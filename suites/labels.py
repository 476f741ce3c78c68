"""Typed Allure label decorators for the suites (allure's own decorators are untyped)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

import allure

F = TypeVar("F", bound=Callable[..., Any])

_allure = cast(Any, allure)

BLOCKER = "blocker"
CRITICAL = "critical"
NORMAL = "normal"
MINOR = "minor"


def labelled(*, feature: str, story: str, severity: str = NORMAL, tags: Iterable[str] = (),
             labels: Mapping[str, str] | None = None,
             links: Iterable[tuple[str, str]] = ()) -> Callable[[F], F]:
    """Allure feature/story/severity (+ tags, custom labels, links as (url, name)) on a test."""
    decorators: list[Callable[[F], F]] = [
        _allure.feature(feature), _allure.story(story),
        _allure.severity(_allure.severity_level(severity)),
    ]
    decorators += [_allure.tag(t) for t in tags]
    decorators += [_allure.label(k, v) for k, v in (labels or {}).items()]
    decorators += [_allure.link(url, name=name) for url, name in links]

    def deco(fn: F) -> F:
        for d in decorators:
            fn = d(fn)
        return fn

    return deco
