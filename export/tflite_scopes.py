"""TFLite INT8 scopes chosen by measurement: `fsanet export --to tflite-int8 --int8-max-drift D
--int8-objective latency|size [--candidates K]`, the AI Edge Quantizer's counterpart of
`export.int8_scopes` (which holds the timing, ranking and writing both share).

A candidate is the op types quantized statically (int8 weights and activations: none, the 3x3
and 1x1 convolutions, or those and the depthwise ones) and where the dense and capsule matrices
(FULLY_CONNECTED, BATCH_MATMUL) live: int8 weights with float compute (weight-only: XNNPACK
turns them into float when it loads the file), float, or int8 products with the activations
quantized per call (dynamic range: int8 x int8 kernels at run time, no calibration). One
calibration covers them all. Each is judged on the --faces against the float ONNX, and those
within the budget are timed on LiteRT against the FP32 TFLite file in one interleaved run.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STAGE = "tflite-int8"
STATIC_SETS = ((), ("CONV_2D",), ("CONV_2D", "DEPTHWISE_CONV_2D"))


@dataclass(frozen=True)
class TfliteScope:
    static_ops: tuple[str, ...]
    matrices: str  # a key of export.int8_scopes.MATRICES: w8 (weight-only), wf (float), i8 (dynamic range)

    @property
    def weight_only(self) -> bool:
        return self.matrices == "w8"

    @property
    def name(self) -> str:
        from fsanet.export.int8_scopes import MATRICES

        convs = {0: "float convolutions", 1: "int8 convolutions", 2: "int8 convolutions and depthwise"}
        return f"{convs[len(self.static_ops)]}, {MATRICES[self.matrices]}"

    @property
    def key(self) -> str:
        return f"{['float', 'conv', 'conv-dw'][len(self.static_ops)]}-{self.matrices}"


def scopes(present: dict[str, int]) -> list[TfliteScope]:
    """Every static set whose op types the file has, with each form of the matrices (not the
    all-float one: that is the FP32 file)."""
    sets = [s for s in STATIC_SETS if all(op in present for op in s)]
    return [TfliteScope(s, m) for s in sets for m in ("w8", "wf", "i8") if s or m != "wf"]


def build_candidates(float_tflite: Path, calib, reference: np.ndarray, verify: np.ndarray, tmp: Path) -> list:
    from importlib.metadata import version

    from fsanet.export import artifact
    from fsanet.export.int8_scopes import Candidate
    from fsanet.export.tflite_quantize import INT8_CANDIDATES, calibrate, describe, graph_op_types, quantize_buffer

    from fsanet.accuracy import drift

    present = graph_op_types(float_tflite)
    qsvs = calibrate(float_tflite, calib, INT8_CANDIDATES)
    built = []
    for scope in scopes(present):
        manifest = artifact.derived_manifest(float_tflite, STAGE, precision="int8")
        manifest["tools"] = dict(manifest["tools"] or {}, **{"ai-edge-quantizer": version("ai-edge-quantizer")})
        quantization = describe(float_tflite, "int8", scope.static_ops, None, scope.matrices, present)
        manifest.update(
            quantization=dict(quantization, scope=scope.name), calibration=artifact.calibration_record(calib)
        )
        path = tmp / f"{scope.key}.tflite"
        path.write_bytes(quantize_buffer(float_tflite, "int8", scope.static_ops, qsvs, scope.matrices))
        d = drift(artifact.predict(path, verify, STAGE, manifest), reference)
        built.append(Candidate(scope, (), manifest, path, d, path.stat().st_size))
    return built


def choose_tflite_scope(
    float_tflite, calib, output, max_drift: float, reference: np.ndarray, verify: np.ndarray, verify_name: str,
    objective: str, candidates: int = 1, reference_name: str = "float ONNX", timing_runs: int | None = None,
) -> list[dict]:  # fmt: skip
    """Build, judge (against `reference`, the float ONNX's angles on `verify`) and time every
    candidate; write the best `candidates` (export.int8_scopes.select_and_write)."""
    from fsanet.export.int8_scopes import TIMING_RUNS, select_and_write

    float_tflite = Path(float_tflite)
    with tempfile.TemporaryDirectory() as tmp:
        built = build_candidates(float_tflite, calib, reference, verify, Path(tmp))
        return select_and_write(
            built, float_tflite, output, max_drift, verify, verify_name, objective, candidates, STAGE, reference_name,
            timing_runs=timing_runs or TIMING_RUNS,
        )  # fmt: skip
