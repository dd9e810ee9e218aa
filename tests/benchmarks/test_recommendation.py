"""The per-machine recommendation: the fastest artifact per runtime that holds the budget."""

from __future__ import annotations

from fsanet.benchmarks.budget import Violation
from fsanet.benchmarks.report import recommendation


def artifact(backend: str, precision: str, hot: float, loop: float, non_finite: int = 0) -> dict:
    return {
        "backend": backend,
        "precision": precision,
        "latency": {"compute": {"1": {"p50_ms": hot}}, "loop": {"1": {"p50_ms": loop}}},
        "non_finite": {"faces": non_finite, "of": 10},
    }


RESULT = {
    "config": {"batches": [1, 32]},
    "machine": {"cpu": "Test CPU"},
    "artifacts": {
        "m.onnx": artifact("onnxruntime", "fp32", 1.5, 2.5),
        "m-int8.onnx": artifact("onnxruntime", "int8", 1.2, 2.9),  # faster hot, slower in the loop
        "m-bad.onnx": artifact("onnxruntime", "int8", 0.1, 0.1, non_finite=3),  # broken: never chosen
        "m.tflite": artifact("tflite", "fp32", 2.0, 2.2),
        "m-int8.tflite": artifact("tflite", "int8", 1.0, 1.1),
    },
}


def test_fastest_per_runtime_within_the_budget():
    violations = [Violation("m-int8.tflite", "drift.mean", 0.25, 0.4)]
    lines = recommendation(RESULT, violations)
    assert lines[0] == "fastest on this machine (Test CPU), batch 1, within the budget:"
    assert (
        lines[1] == "  - onnxruntime: m-int8.onnx hot (1.200 ms p50, int8); in the loop m.onnx (2.500 ms, fp32), of 2"
    )
    assert lines[2] == "  - tflite: m.tflite hot (2.000 ms p50, fp32) and in the loop (2.200 ms), of 1"


def test_without_a_budget_every_finite_artifact_counts():
    lines = recommendation(RESULT, None)
    assert "measured (no budget given)" in lines[0] and "m-int8.tflite hot (1.000 ms" in lines[2]


def test_nothing_holds_the_budget():
    violations = [Violation(n, "drift.mean", 0.1, 1.0) for n in RESULT["artifacts"]]
    assert recommendation(RESULT, violations)[1] == "  - none: no artifact holds the budget"
