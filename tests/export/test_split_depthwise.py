"""The fused graph's shared image convolution, split back into streams before INT8."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from fsanet.export.split_depthwise import split_image_depthwise


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_fusion_graph_gets_one_image_convolution_per_stream(fusion_onnx, real_faces):
    model = onnx.load(str(fusion_onnx))
    image = model.graph.input[0].name
    assert sum(n.op_type == "Slice" for n in model.graph.node) == 6  # 3 members x 2 streams
    split = onnx.load(str(fusion_onnx))
    assert split_image_depthwise(split) == 6
    onnx.checker.check_model(split, full_check=True)
    assert not any(n.op_type == "Slice" for n in split.graph.node)
    convs = [n for n in split.graph.node if n.op_type == "Conv" and n.input[0] == image]
    assert len(convs) == 6 and len(split.graph.initializer) < len(model.graph.initializer)
    x = np.ascontiguousarray(real_faces[:64].transpose(0, 3, 1, 2)).astype(np.float32)
    np.testing.assert_allclose(_run(split, x), _run(model, x), atol=1e-3)  # degrees


def test_graph_without_a_shared_image_convolution_is_left_alone(reference_models):
    model = onnx.load(reference_models["omasaht-1x1"].partition("@")[0])
    before = model.SerializeToString()
    assert split_image_depthwise(model) == 0
    assert model.SerializeToString() == before
