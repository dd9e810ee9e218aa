"""`fsanet eval`: angles of a model on a labelled set, and their MAE."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fsanet.accuracy import mae
from fsanet.data import FaceSet, open_faces
from fsanet.errors import DataError


def predict_torch(model, crops: np.ndarray, batch: int = 64) -> np.ndarray:
    """(N, 64, 64, 3) BGR crops -> (N, 3) angles with a PyTorch model on the CPU."""
    import torch

    from fsanet.preprocess import to_nchw

    x = to_nchw(crops)
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            out.append(model(torch.from_numpy(x[i : i + batch])).numpy())
    return np.concatenate(out) if out else np.zeros((0, 3), np.float32)


def evaluate(model_path: str | Path, data: str | Path | FaceSet, json_path: str | Path | None = None) -> dict:
    """MAE of any artifact (`.pt`, `.onnx`, ...; `path@format` for foreign files) on a labelled set."""
    from fsanet import runtimes
    from fsanet.runtimes.estimator import PoseEstimator, require_finite

    faces = data if isinstance(data, FaceSet) else open_faces(data)
    if faces.poses is None:
        raise DataError(
            f"{faces.source}: has no pose labels; eval needs a labelled set (AFLW2000, 300W-LP, BIWI, .npz)"
        )
    if len(faces) == 0:
        raise DataError(f"{faces.describe()}: nothing left to evaluate")
    with PoseEstimator(runtimes.open(model_path)) as estimator:
        pred = require_finite(estimator.predict(faces.images(progress=True)), str(model_path))
    result = {
        "model": str(model_path),
        "data": faces.source,
        "count": len(faces),
        "dropped": faces.dropped,
        "mae": mae(pred, faces.poses),
    }
    if json_path:
        from fsanet.files import json_text, write_text

        write_text(json_path, json_text(result))
    return result


def format_result(result: dict) -> str:
    m = result["mae"]
    lines = [
        f"{result['model']} on {result['data']}: {result['count']} faces"
        + "".join(f", {n} dropped ({why})" for why, n in result["dropped"].items()),
        "MAE (degrees)   yaw    pitch  roll   mean",
        f"                {m['yaw']:<6.2f} {m['pitch']:<6.2f} {m['roll']:<6.2f} {m['mean']:.2f}",
    ]
    return "\n".join(lines)
