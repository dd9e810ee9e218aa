"""TFLite FP32 of the authors' fusion: the same angles as the float ONNX, through LiteRT."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fsanet import runtimes
from fsanet.accuracy import drift


def test_tflite_float_matches_the_float_onnx_on_real_faces(fusion_tflite, fusion_onnx, real_faces):
    with runtimes.open(fusion_tflite, threads=1) as tfl, runtimes.open(fusion_onnx) as ref:
        assert tfl.backend == "tflite" and tfl.fixed_batch == 1  # batches run face by face
        d = drift(tfl.predict(real_faces), ref.predict(real_faces))
    assert d["max"] <= 0.01


def test_tflite_fusion_convolves_the_image_once_per_stream(fusion_tflite, fusion_onnx):
    import onnx
    from fsanet.export.tflite_quantize import graph_op_types

    # the shared grouped image convolution is an ONNX Runtime choice; LiteRT ran it ~18% slower
    assert sum(n.op_type == "Slice" for n in onnx.load(str(fusion_onnx)).graph.node) == 6
    ops = {getattr(k, "value", k): n for k, n in graph_op_types(fusion_tflite).items()}
    assert "STRIDED_SLICE" not in ops and ops["DEPTHWISE_CONV_2D"] >= 6 * 7  # 7 blocks per stream


def test_tflite_eval_gives_the_authors_numbers(fusion_tflite, shared_data, tmp_path):
    from fsanet.cli import main

    out = tmp_path / "eval.json"
    assert main(["eval", str(fusion_tflite), "--data", str(shared_data / "aflw2000-sample"), "--json", str(out)]) == 0
    assert abs(json.loads(out.read_text())["mae"]["mean"] - 3.98) <= 0.01


def test_tflite_runs_without_torch_or_tensorflow(fusion_tflite, real_faces, tmp_path):
    import subprocess
    import sys

    np.save(tmp_path / "crops.npy", real_faces[:3])
    code = (
        "import sys, numpy as np; from fsanet import runtimes; "
        f"rt = runtimes.open({str(fusion_tflite)!r}); a = rt.predict(np.load({str(tmp_path / 'crops.npy')!r})); "
        "assert a.shape == (3, 3); heavy = {'torch', 'tensorflow'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_changed_tflite_file_is_refused(fusion_tflite, tmp_path):
    import shutil

    from fsanet.errors import DataError

    bad = tmp_path / "fusion.tflite"
    shutil.copy(fusion_tflite, bad)
    shutil.copy(f"{fusion_tflite}.json", f"{bad}.json")
    with open(bad, "ab") as f:
        f.write(b"\0")
    with pytest.raises(DataError, match="does not match its manifest"):
        runtimes.open(bad)


# ---- quantized TFLite (AI Edge Quantizer), calibrated on AFW, judged on HELEN ----------------
def _quantize(fusion_tflite, tmp_path, precision, helen, calib=None, **kw):
    from fsanet.export.tflite_quantize import quantize_tflite

    faces, reference = helen
    out = tmp_path / f"fusion-{precision}.tflite"
    m = quantize_tflite(fusion_tflite, out, precision, reference, faces, "helen", calib, **kw)
    return out, m


def test_tflite_int8_holds_the_budget_with_8_bit_weights(fusion_tflite, fusion_tflite_int8, helen, afw_calib):
    from fsanet.manifest import read_sidecar

    m = read_sidecar(fusion_tflite_int8)
    q = m["quantization"]
    assert q["int8 weights and activations"] == ["CONV_2D"]
    assert set(q["int8 weights, float compute"]) == {"FULLY_CONNECTED", "BATCH_MATMUL"}
    assert "DIV" in q["float"] and "CONV_2D" not in q["float"]
    assert m["calibration"]["sha256"] == afw_calib.sha256
    # dense and capsule weights in 8 bits: the file shrinks to about a third
    assert fusion_tflite_int8.stat().st_size <= 0.4 * fusion_tflite.stat().st_size
    faces, reference = helen
    with runtimes.open(fusion_tflite_int8, threads=1) as rt:
        d = drift(rt.predict(faces), reference)
    assert d["mean"] <= 0.25 and d["mean"] == pytest.approx(m["verification"]["drift_mean_deg"], abs=1e-6)
    assert d["mean"] > 0.01  # it is really quantized


def test_tflite_fp16_and_dynamic_range(fusion_tflite, tmp_path, helen):
    fp16, m16 = _quantize(fusion_tflite, tmp_path, "fp16", helen)
    dyn, mdyn = _quantize(fusion_tflite, tmp_path, "dynamic-int8", helen)
    size = fusion_tflite.stat().st_size
    assert fp16.stat().st_size < 0.9 * size and m16["verification"]["drift_mean_deg"] <= 0.01
    assert dyn.stat().st_size <= 0.35 * size and mdyn["verification"]["drift_mean_deg"] <= 0.25
    assert mdyn["precision"] == "dynamic-int8" and mdyn["float_source"]["file"] == fusion_tflite.name


def test_tflite_int8_search_keeps_what_fits_and_refuses_the_impossible(fusion_tflite, tmp_path, helen, afw_calib):
    from fsanet.errors import ExportError

    _, m = _quantize(fusion_tflite, tmp_path, "int8", helen, afw_calib, max_drift=0.25)
    search = m["quantization"]["search"]
    assert "CONV_2D" in m["quantization"]["int8 weights and activations"]
    assert all(t["drift_mean_deg"] <= 0.25 for t in search["trajectory"] if t["kept"])
    assert m["verification"]["drift_mean_deg"] <= 0.25
    with pytest.raises(ExportError, match="no op type can go to INT8"):
        _quantize(fusion_tflite, tmp_path, "int8", helen, afw_calib, max_drift=1e-4)


def test_tflite_int8_needs_a_calibration_set(fusion_tflite, tmp_path, helen):
    from fsanet.errors import DataError

    with pytest.raises(DataError, match="--calib"):
        _quantize(fusion_tflite, tmp_path, "int8", helen)
