"""Pictures of a model's behaviour on a labelled set: the confusion matrix and the score
distribution of normal and anomalous rows, with the decision threshold (PNG, 'plots' extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hil.extras import needs_extra
from hil.ml.metrics import Quality


def plot_model(quality: Quality, scores: Sequence[float | None], labels: Sequence[int], threshold: float,
               path: Path, *, title: str) -> Path:
    with needs_extra("plots"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax_cm, ax_hist = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    cells = [[quality.tn, quality.fp], [quality.fn, quality.tp]]
    ax_cm.imshow(cells, cmap="Blues")
    for r in range(2):
        for c in range(2):
            ax_cm.text(c, r, str(cells[r][c]), ha="center", va="center", fontsize=14)
    ax_cm.set_xticks([0, 1], ["normal", "anomaly"])
    ax_cm.set_yticks([0, 1], ["normal", "anomaly"])
    ax_cm.set_xlabel("predicted by the device")
    ax_cm.set_ylabel("golden label")
    ax_cm.set_title(f"P={quality.precision:.3f} R={quality.recall:.3f} F1={quality.f1:.3f}")
    normal = [s for s, y in zip(scores, labels, strict=True) if s is not None and not y]
    anomalous = [s for s, y in zip(scores, labels, strict=True) if s is not None and y]
    bins = [i / 40 for i in range(41)]
    ax_hist.hist(normal, bins=bins, alpha=0.6, label=f"normal (n={len(normal)})", log=True)
    ax_hist.hist(anomalous, bins=bins, alpha=0.6, label=f"anomaly (n={len(anomalous)})", log=True)
    ax_hist.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:g}")
    ax_hist.set_xlabel("score P(anomaly) reported by the device")
    ax_hist.set_ylabel("rows (log)")
    ax_hist.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
