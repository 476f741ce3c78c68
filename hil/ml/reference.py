"""Reference inference on the harness host: the same model file, onnxruntime on this machine.

A device that disagrees with it runs the model differently (conversion, runtime version,
a different file): the agreement check catches what a metric within tolerance could hide.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hil.extras import needs_extra


def reference_scores(model: Path, rows: Sequence[Sequence[float]], *,
                     output: str = "probabilities") -> list[float]:
    """P(anomaly) per row (column 1 of the model's probability output)."""
    with needs_extra("ml"):
        import numpy as np
        import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(model.read_bytes(), opts, providers=["CPUExecutionProvider"])
    x = np.asarray(rows, dtype=np.float32)
    probabilities = session.run([output], {session.get_inputs()[0].name: x})[0]
    return [float(v) for v in probabilities[:, 1]]
