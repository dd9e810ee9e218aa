"""Float ONNX -> FP16 ONNX (onnxconverter-common): weights and compute in float16, input and
output kept float32 so every runtime takes the same crops. Meant for GPUs (TensorRT builds it
as a strongly typed FP16 network); ONNX Runtime's CPU provider runs it too, mostly via casts."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

from fsanet.errors import ExportError


def to_fp16(float_path: str | Path, output: str | Path, verify: np.ndarray, verify_name: str) -> dict:
    import onnx
    from fsanet.export.quantize import derived_manifest, measure_drift
    from onnxconverter_common import float16

    from fsanet.files import atomic_write
    from fsanet.manifest import METADATA_KEY, write_sidecar

    float_path, output = Path(float_path), Path(output)
    manifest = derived_manifest(float_path, "onnx-fp16", precision="fp16")
    with warnings.catch_warnings():  # it warns for each constant below float16's range (1e-7 eps)
        warnings.simplefilter("ignore", UserWarning)
        model = float16.convert_float_to_float16(onnx.load(str(float_path)), keep_io_types=True)
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / "fp16.onnx"
        onnx.save(model, str(candidate))
        d = measure_drift(float_path, candidate, verify, "onnx-fp16")
        manifest["verification"] = {
            "against": float_path.name,
            "faces": verify_name,
            "count": len(verify),
            "drift_mean_deg": d["mean"],
            "drift_max_deg": d["max"],
        }
        onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(manifest)})
        onnx.save(model, str(candidate))
        atomic_write(output, lambda dst: Path(dst).write_bytes(candidate.read_bytes()))
    write_sidecar(output, manifest)
    if not np.isfinite(d["max"]):
        raise ExportError("onnx-fp16", "float16 overflowed: the angles are not finite")
    return manifest
