"""This CPU's FP32 peak as ONNX Runtime reaches it, measured inside a bench run.

A square MatMul with a constant (prepacked) right-hand side is the most efficient FP32 kernel
ONNX Runtime has on a CPU (256 x 256 x 256 per thread; FSA-Net's 1x1 convolutions, the best of
its kernels, stay below it in `fsanet profile`). `fsanet bench --peak-gflops
measure` times it in the same interleaved rounds as the artifacts, so the fraction of peak is a
ratio of two medians taken under the same conditions, not a number from another day.
"""

from __future__ import annotations

import os

import numpy as np

SIZE = 256  # per thread: B (256 KB) stays in L2, the kernel stays compute-bound


class GemmPeak:
    """One FP32 MatMul session; `run()` is one timed call, `flops` its work."""

    def __init__(self, threads: int = 1, denormals_as_zero: bool = True):
        from fsanet.runtimes.onnxruntime import create_session, import_ort
        from onnx import TensorProto, helper, numpy_helper

        ort = import_ort()
        rows = threads if threads and threads > 0 else os.cpu_count() or 1  # 0/None: ORT's default pool
        m, k, n = SIZE * rows, SIZE, SIZE
        rng = np.random.default_rng(0)
        b = numpy_helper.from_array(rng.uniform(-1, 1, (k, n)).astype(np.float32), "b")
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["a", "b"], ["y"])],
            "peak",
            [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
            [b],
        )
        self.model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads, so.inter_op_num_threads = threads or 0, 1
        model = self.model.SerializeToString()
        self.session, self._env = create_session(ort, model, so, ["CPUExecutionProvider"], denormals_as_zero)
        self.feed = {"a": rng.uniform(-1, 1, (m, k)).astype(np.float32)}
        self.flops = 2 * m * k * n
        self.kernel = f"ONNX Runtime MatMul {m}x{k}x{n} fp32, {threads or 'default'} thread(s)"

    def run(self) -> None:
        with self._env:  # the same floating-point setting as the artifacts' runs
            self.session.run(None, self.feed)
