"""Binary classification quality: precision, recall, F1 and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

METRICS = ("precision", "recall", "f1")


@dataclass(frozen=True)
class Quality:
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def value(self, metric: str) -> float:
        return float(getattr(self, metric))

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), **{m: round(self.value(m), 4) for m in METRICS}, "n": self.n}


def quality(truth: Sequence[int], predicted: Sequence[int]) -> Quality:
    if len(truth) != len(predicted):
        raise ValueError("truth and predictions differ in length")
    tp = sum(1 for t, p in zip(truth, predicted, strict=True) if t and p)
    fp = sum(1 for t, p in zip(truth, predicted, strict=True) if not t and p)
    fn = sum(1 for t, p in zip(truth, predicted, strict=True) if t and not p)
    return Quality(tp, fp, fn, len(truth) - tp - fp - fn)


def agreement(a: Sequence[int], b: Sequence[int]) -> float:
    """Share of positions where two label sequences agree."""
    if len(a) != len(b) or not a:
        raise ValueError("agreement needs two non-empty sequences of one length")
    return sum(1 for x, y in zip(a, b, strict=True) if x == y) / len(a)
