"""Flush-to-zero applies to the model's runs only, never to the caller's own arithmetic."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from fsanet.runtimes import fpenv

from fsanet import runtimes

SUBNORMAL_INPUT = np.full((1, 3, 64, 64), 1e-39, np.float32)  # float32 subnormals


def numpy_keeps_subnormals() -> bool:
    return bool((np.array([1e-310]) * np.array([1.0]))[0] != 0.0)


@pytest.mark.skipif(fpenv.flushing(fpenv.capture()) is None, reason="no known fenv layout on this machine")
@pytest.mark.parametrize("threads", [1, None])
def test_runs_flush_and_the_caller_does_not(tiny_models, threads):
    assert numpy_keeps_subnormals()
    with runtimes.open(tiny_models["mean"], threads=threads) as rt:
        assert numpy_keeps_subnormals()
        np.testing.assert_array_equal(rt.infer(SUBNORMAL_INPUT), 0.0)  # the means flushed
        assert numpy_keeps_subnormals()
    with runtimes.open(tiny_models["mean"], threads=threads, denormals_as_zero=False) as rt:
        assert (rt.infer(SUBNORMAL_INPUT) > 0).all()  # IEEE: the subnormal means survive


def test_the_processs_first_session_does_not_leak_flush_to_zero(tiny_models):
    """ONNX Runtime sets the creating thread's flags in a process's first session: a fresh
    interpreter shows it, and shows that opening a runtime puts them back."""
    path = tiny_models["mean"].split("@")[0]
    code = f"""
import numpy as np
from fsanet.runtimes.onnxruntime import create_session, import_ort
ort = import_ort()
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session, applied = create_session(ort, {path!r}, options, ["CPUExecutionProvider"], True)
print((np.array([1e-310]) * np.array([1.0]))[0] != 0.0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
