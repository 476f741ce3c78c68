"""Judging ML figures against the gate policy: one function per kind of figure, shared by the
suite (which fails the test) and the gate's ``ml`` pass (which decides), so both say the same.

Each returns the problems found, each naming the metric, the value and the limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hil.ml.metrics import METRICS
from hil.ml.policy import MlPolicy

Problems = list[str]


def _num(values: Mapping[str, Any], key: str) -> float | None:
    v = values.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def quality(values: Mapping[str, Any], policy: MlPolicy) -> Problems:
    """``values``: measured precision/recall/f1, the card's ``card_<metric>``, ``missing``."""
    out: Problems = []
    floors = policy.quality
    for m in METRICS:
        got = _num(values, m)
        if got is None:
            out.append(f"{m}: not measured")
            continue
        floor = getattr(floors, f"min_{m}")
        if floor is not None and got < floor:
            out.append(f"{m} {got:.4f} < {floor:g} (gate.yaml ml.quality.min_{m})")
        declared = _num(values, f"card_{m}")
        if declared is not None and abs(got - declared) > policy.card_tolerance:
            out.append(f"{m} {got:.4f} differs from the model card's {declared:.4f} by more than "
                       f"{policy.card_tolerance:g} (gate.yaml ml.card_tolerance)")
    missing = _num(values, "missing")
    if missing is not None and missing > policy.max_missing:
        out.append(f"{missing:.0f} golden rows got no score (gate.yaml ml.max_missing: {policy.max_missing})")
    return out


def agreement(values: Mapping[str, Any], policy: MlPolicy) -> Problems:
    got = _num(values, "agreement")
    if got is None:
        return ["agreement: not measured"]
    if got < policy.min_agreement:
        return [f"agreement with the reference inference {got:.4f} < {policy.min_agreement:g} "
                "(gate.yaml ml.min_agreement)"]
    return []


def footprint(values: Mapping[str, Any], policy: MlPolicy) -> Problems:
    out: Problems = []
    b = policy.footprint
    for key, limit, unit, name in (
            ("peak_rss_mib", b.max_rss_mib, "MiB", "max_rss_mib"),
            ("mean_cpu_percent", b.max_mean_cpu_percent, "%", "max_mean_cpu_percent"),
            ("model_bytes", b.max_model_bytes, "bytes", "max_model_bytes"),
            ("start_to_first_score_s", b.max_start_to_first_score_s, "s", "max_start_to_first_score_s")):
        if key not in values:
            continue
        got = _num(values, key)
        if got is None:
            out.append(f"{key}: not measured")
        elif limit is not None and got > limit:
            out.append(f"{key} {got:g} {unit} > {limit:g} {unit} (gate.yaml ml.footprint.{name})")
    return out


def drift(values: Mapping[str, Any], policy: MlPolicy) -> Problems:
    """``values``: ``drifted_first_s`` (None: never raised) and ``clean_raised`` (bool)."""
    out: Problems = []
    if "drifted_first_s" in values:
        first = _num(values, "drifted_first_s")
        limit = policy.drift.raise_within_s
        if first is None:
            out.append(f"drift: the drifted set never raised the drift signal (within {limit:g} s, "
                       "gate.yaml ml.drift.raise_within_s)")
        elif first > limit:
            out.append(f"drift: raised {first:.1f} s into the drifted set, later than {limit:g} s "
                       "(gate.yaml ml.drift.raise_within_s)")
    if values.get("clean_raised") is True:
        out.append("drift: the clean golden set raised the drift signal (a false alarm)")
    return out


def champion(values: Mapping[str, Any], policy: MlPolicy) -> Problems:
    """``values``: ``champion_<metric>`` and ``challenger_<metric>`` per metric."""
    out: Problems = []
    for m in METRICS:
        old, new = _num(values, f"champion_{m}"), _num(values, f"challenger_{m}")
        if old is None or new is None:
            continue
        if old - new > policy.max_regression:
            out.append(f"{m} regressed against the champion {values.get('champion_version', '?')}: "
                       f"{new:.4f} vs {old:.4f} (more than {policy.max_regression:g}, "
                       "gate.yaml ml.max_regression)")
    return out


def provenance(values: Mapping[str, Any], _policy: MlPolicy) -> Problems:
    """``values``: ``declared_sha256`` (card + recipe), ``hub_sha256`` (file), ``running_sha256``."""
    declared = values.get("declared_sha256")
    out: Problems = []
    for key, what in (("recipe_sha256", "the recipe's declared digest"),
                      ("hub_sha256", "the model file on the hub"),
                      ("running_sha256", "the model the component runs")):
        if key in values and values.get(key) != declared:
            out.append(f"model digest: {what} is {values.get(key) or 'unknown'}, the model card declares "
                       f"{declared}")
    return out


JUDGES = {"quality": quality, "agreement": agreement, "footprint": footprint, "drift": drift,
          "champion": champion, "provenance": provenance}
"""Figure kind -> its judge; a figure of another kind is reported, not judged."""


def judge(kind: str, values: Mapping[str, Any], policy: MlPolicy) -> Problems:
    fn = JUDGES.get(kind)
    return fn(values, policy) if fn else []
