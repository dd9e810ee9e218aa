from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from fsanet.export.onnx import export_onnx
from fsanet.runtimes.base import InputFormat
from fsanet.runtimes.onnxruntime import OnnxRuntime

from fsanet import checkpoint
from fsanet import model as M
from fsanet.errors import ExportError
from fsanet.evaluate import predict_torch
from fsanet.manifest import METADATA_KEY, read_sidecar


def test_fused_graph_is_flat_named_dynamic_and_checked(fusion_onnx):
    model = onnx.load(str(fusion_onnx))
    assert model.opset_import[0].version >= 17
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["angles"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert not {n.op_type for n in model.graph.node} & {"Loop", "If", "Scan", "SequenceConstruct"}
    onnx.checker.check_model(model, full_check=True)
    embedded = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert embedded["precision"] == "fp32" and embedded["input"]["layout"] == "NCHW"
    assert embedded["members"] == list(M.FUSION_MEMBERS)


def test_fused_onnx_gives_the_pytorch_fusion_angles_on_real_faces(fusion_onnx, fusion_checkpoint, real_faces):
    manifest = read_sidecar(fusion_onnx)
    assert manifest["verification"]["count"] == 1207
    assert manifest["verification"]["max_abs_diff_deg"] <= 1e-3
    with OnnxRuntime(fusion_onnx) as rt:  # configures itself from the manifest
        got = np.concatenate([rt.predict(real_faces[i : i + 100]) for i in range(0, len(real_faces), 100)])
    expected = predict_torch(checkpoint.load(fusion_checkpoint), real_faces)
    assert np.abs(got - expected).max() <= 1e-3
    # any batch size runs
    with OnnxRuntime(fusion_onnx) as rt:
        assert rt.predict(real_faces[:1]).shape == (1, 3) and rt.predict(real_faces[:7]).shape == (7, 3)


def test_eval_of_the_onnx_gives_the_authors_numbers(fusion_onnx, shared_data, tmp_path):
    from fsanet.cli import main

    out = tmp_path / "eval.json"
    assert main(["eval", str(fusion_onnx), "--data", str(shared_data / "aflw2000-sample"), "--json", str(out)]) == 0
    m = json.loads(out.read_text())["mae"]
    for angle, value in {"yaw": 2.97, "pitch": 7.10, "roll": 1.87, "mean": 3.98}.items():
        assert abs(m[angle] - value) <= 0.01, angle


@pytest.mark.parametrize("variant", ["fsanet-var-netvlad", "fsanet-1x1-metric", "ssrnet-md"])
def test_other_variants_export_and_agree(variant, tmp_path, real_faces):
    torch.manual_seed(0)
    ckpt = checkpoint.save(M.build(variant), tmp_path / f"{variant}.pt")
    out = export_onnx(ckpt, tmp_path / f"{variant}.onnx", real_faces[:64], "real faces")
    with OnnxRuntime(out) as rt:
        got = rt.predict(real_faces[:64])
    np.testing.assert_allclose(got, predict_torch(checkpoint.load(ckpt), real_faces[:64]), atol=1e-3)


def test_export_refuses_a_graph_that_disagrees(fusion_checkpoint, tmp_path, real_faces):
    out = tmp_path / "strict.onnx"
    with pytest.raises(ExportError, match="differs from PyTorch.*not written"):
        export_onnx(fusion_checkpoint, out, real_faces[:32], "real faces", tolerance=0.0)
    assert list(tmp_path.iterdir()) == []


def test_manifest_input_format_is_what_the_graph_wants(fusion_onnx):
    with OnnxRuntime(fusion_onnx) as rt:
        assert rt.input_format == InputFormat("NCHW", "BGR", 0.0, 1.0, 64)
        assert rt.inputs[0].name == "input" and rt.outputs[0].name == "angles"
