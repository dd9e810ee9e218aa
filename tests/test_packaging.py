"""What a runtime-only board relies on: the downstream stages import without torch or TF."""

import subprocess
import sys

import pytest

LIGHT = [
    "fsanet.benchmarks.accuracy",
    "fsanet.benchmarks.bench",
    "fsanet.benchmarks.budget",
    "fsanet.benchmarks.flops",
    "fsanet.benchmarks.latency",
    "fsanet.benchmarks.memory",
    "fsanet.benchmarks.report",
    "fsanet.runtimes",
    "fsanet.runtimes.estimator",
    "fsanet.runtimes.onnxruntime",
    "fsanet.runtimes.tflite",
    "fsanet.calib",
    "fsanet.manifest",
    "fsanet.preprocess",
    "fsanet.pose",
    "fsanet.data",
    "fsanet.cli",
]


@pytest.mark.parametrize("module", LIGHT)
def test_imports_without_torch_or_tensorflow(module):
    code = f"import sys, {module}; heavy = {{'torch', 'tensorflow'}} & set(sys.modules); assert not heavy, heavy"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "fsanet", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("import-keras", "export", "eval", "predict", "bench", "variants"):
        assert command in out
