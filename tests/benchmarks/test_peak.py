"""The peak GEMM that `fsanet bench --peak-gflops measure` times."""

from __future__ import annotations

import numpy as np
import pytest
from fsanet.benchmarks.peak import GemmPeak
from onnx import numpy_helper


@pytest.mark.parametrize("threads", [1, 2])
def test_the_peak_kernel_is_a_real_matmul_of_the_counted_size(threads):
    peak = GemmPeak(threads)
    (a,) = peak.feed.values()
    assert a.shape == (256 * threads, 256)
    (y,) = peak.session.run(None, peak.feed)
    b = numpy_helper.to_array(peak.model.graph.initializer[0])
    assert b.shape == (256, 256) and np.abs(b).max() > 0.5
    np.testing.assert_allclose(y, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
    assert peak.flops == 2 * a.shape[0] * 256 * 256
    assert f"{threads} thread(s)" in peak.kernel
