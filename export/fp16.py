"""Float ONNX -> FP16 ONNX (onnxconverter-common): weights and compute in float16, input and
output kept float32 so every runtime takes the same crops. Meant for GPUs (TensorRT builds it
as a strongly typed FP16 network); ONNX Runtime's CPU provider runs it too, mostly via casts."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np


def to_fp16(float_path: str | Path, output: str | Path, verify: np.ndarray, verify_name: str) -> dict:
    from importlib.metadata import version

    import onnx
    from fsanet.export import artifact
    from onnxconverter_common import float16

    float_path, output = Path(float_path), Path(output)
    manifest = artifact.derived_manifest(
        float_path,
        "onnx-fp16",
        precision="fp16",
        quantization={"method": "onnxconverter-common float16: weights and compute float16, input and output float32"},
    )
    manifest["tools"] = dict(manifest["tools"] or {}, **{"onnxconverter-common": version("onnxconverter-common")})
    with warnings.catch_warnings():  # it warns for each constant below float16's range (1e-7 eps)
        warnings.simplefilter("ignore", UserWarning)
        model = float16.convert_float_to_float16(onnx.load(str(float_path)), keep_io_types=True)
    return artifact.verify_and_write_onnx(model, output, manifest, float_path, verify, verify_name, "onnx-fp16")
