"""TensorRT builder: everything checkable without TensorRT here (calibration batches and cache,
build plans and their errors, what TensorRT's parser needs from our ONNX), and the real build on a
machine with TensorRT and a CUDA GPU (a Jetson), skipped only where those are missing."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import onnx
import pytest
from fsanet.calib.build import CalibrationSet, crops_sha256
from fsanet.export import trt_onnx
from fsanet.export.tensorrt import build_engine, choose_source, plan_build, prefers_typed, typed_sibling
from fsanet.export.trt_calibrator import (
    CacheKey,
    CalibrationFeed,
    cache_path,
    calibration_batches,
    calibration_shape,
    key_path,
    read_cache,
    write_cache,
)
from fsanet.runtimes.base import InputFormat
from onnx import TensorProto, helper, numpy_helper

from fsanet.errors import BackendUnavailable, DataError, ExportError

KEY = CacheKey("a" * 64, "b" * 64, "10.3.0.30")


def _calib(crops: np.ndarray) -> CalibrationSet:
    return CalibrationSet(crops, {"format": "fsanet-calibration", "sha256": crops_sha256(crops), "count": len(crops)})


# -- calibration batches ---------------------------------------------------------------------------
def test_calibration_batches_are_full_nchw_float32_in_order_and_wrap_the_last(real_faces):
    crops = real_faces[:10]
    batches = list(calibration_batches(_calib(crops), 4))
    assert len(batches) == 3
    for b in batches:
        assert b.shape == (4, 3, 64, 64) and b.dtype == np.float32 and b.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(batches[0], InputFormat().prepare(crops[:4]))
    np.testing.assert_array_equal(batches[0][1, 0], crops[1][..., 0])  # channel 0 is blue, raw 0..255
    last = np.concatenate([crops[8:10], crops[:2]])  # completed with the first faces
    np.testing.assert_array_equal(batches[2], InputFormat().prepare(last))


def test_calibration_batches_follow_the_input_format(real_faces):
    fmt = InputFormat(layout="NHWC", colour="RGB", mean=127.5, std=128.0)
    (batch,) = calibration_batches(_calib(real_faces[:3]), 3, fmt)
    assert batch.shape == (3, 64, 64, 3)
    np.testing.assert_allclose(batch[0, ..., 0], (real_faces[0][..., 2] - 127.5) / 128.0)


@pytest.mark.parametrize("size", [0, -1])
def test_calibration_batch_size_must_be_positive(real_faces, size):
    with pytest.raises(DataError, match="at least 1"):
        next(calibration_batches(_calib(real_faces[:2]), size))


# -- calibration cache ------------------------------------------------------------------------------
RAW = b"TRT-100300-EntropyCalibration2\ninput: 3c010a14\n/conv1/Conv_output_0: 3d8f5c29\n"


def test_the_cache_stays_tensorrts_bytes_and_its_key_sits_beside_it(tmp_path):
    path = cache_path(tmp_path, KEY)
    write_cache(path, KEY, RAW)
    assert path.read_bytes() == RAW  # byte-exact: trtexec --calib and Polygraphy read it
    sidecar = json.loads(key_path(path).read_text())
    assert sidecar == {"format": "fsanet-tensorrt-calibration-cache", "calib_sha256": "a" * 64,
                       "onnx_sha256": "b" * 64, "tensorrt": "10.3.0.30"}  # fmt: skip
    assert read_cache(path, KEY) == RAW


def test_cache_is_reused_only_for_the_same_faces_network_and_tensorrt(tmp_path):
    path = cache_path(tmp_path, KEY)
    write_cache(path, KEY, RAW)
    for other in (
        CacheKey("c" * 64, KEY.onnx_sha256, KEY.tensorrt),
        CacheKey(KEY.calib_sha256, "d" * 64, KEY.tensorrt),
        CacheKey(KEY.calib_sha256, KEY.onnx_sha256, "8.6.2.3"),
    ):
        assert read_cache(path, other) is None  # same file, other key: never handed to TensorRT
        assert cache_path(tmp_path, other) != path


def test_a_cache_without_its_key_is_not_read(tmp_path):
    raw = tmp_path / "trtexec.cache"
    raw.write_bytes(b"TRT-8602-EntropyCalibration2\ninput: 3c010a14\n")  # trtexec's own, no key beside it
    assert read_cache(raw, KEY) is None
    key_path(raw).write_text("not json")
    assert read_cache(raw, KEY) is None
    assert read_cache(tmp_path / "none.cache", KEY) is None


def test_rewriting_a_cache_replaces_its_key(tmp_path):
    path = cache_path(tmp_path, KEY)
    write_cache(path, KEY, RAW)
    other = CacheKey("e" * 64, KEY.onnx_sha256, KEY.tensorrt)
    write_cache(path, other, b"TRT-100300-EntropyCalibration2\ninput: 3c000000\n")
    assert read_cache(path, KEY) is None and read_cache(path, other).endswith(b"3c000000\n")


def test_a_failed_cache_write_is_kept_and_fails_the_build(tmp_path, real_faces):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    feed = CalibrationFeed(_calib(real_faces[:4]), 2, blocker / "c.cache", KEY, lambda x: 1)
    # what the calibrator's write_calibration_cache does inside TensorRT's noexcept callback
    assert feed.guarded("write_calibration_cache", feed.write_cache, memoryview(RAW)) is None
    assert isinstance(feed.error, OSError)
    with pytest.raises(ExportError, match="INT8 calibration failed"):
        feed.raise_error()
    ok = CalibrationFeed(_calib(real_faces[:4]), 2, tmp_path / "c.cache", KEY, lambda x: 1)
    ok.raise_error()  # nothing went wrong: nothing raised


@pytest.mark.parametrize("shape, batch, expected", [
    (("batch", 3, 64, 64), 32, (32, 3, 64, 64)),
    ((0, 3, 64, 64), 32, (32, 3, 64, 64)),
    ((8, 3, 64, 64), 32, (8, 3, 64, 64)),  # a static-batch ONNX takes only its own batch
])  # fmt: skip
def test_calibration_shape_keeps_a_static_batch(shape, batch, expected):
    assert calibration_shape(shape, batch) == expected


def test_cache_file_names_carry_the_calibration_set_hash(real_faces, tmp_path):
    a, b = _calib(real_faces[:4]), _calib(real_faces[4:8])
    paths = {cache_path(tmp_path, CacheKey(c.sha256, KEY.onnx_sha256, KEY.tensorrt)) for c in (a, b)}
    assert len(paths) == 2 and all(a.sha256[:16] in p.name or b.sha256[:16] in p.name for p in paths)


def test_feed_uploads_every_batch_then_stops_and_keys_its_cache(real_faces, tmp_path):
    uploaded = []

    def upload(x):  # stands in for the GPU copy: returns the "device address" TensorRT gets
        uploaded.append(x.copy())
        return 4096 + len(uploaded)

    feed = CalibrationFeed(_calib(real_faces[:5]), 2, tmp_path / "c.cache", KEY, upload)
    assert feed.read_cache() is None and not feed.used_cache
    pointers = [feed.next_batch(["input"]) for _ in range(4)]
    assert pointers == [[4097], [4098], [4099], None] and feed.batches_fed == 3
    assert [u.shape for u in uploaded] == [(2, 3, 64, 64)] * 3
    feed.write_cache(memoryview(b"scales"))
    again = CalibrationFeed(_calib(real_faces[:5]), 2, tmp_path / "c.cache", KEY, upload)
    assert again.read_cache() == b"scales" and again.used_cache
    other = CacheKey("e" * 64, KEY.onnx_sha256, KEY.tensorrt)
    assert CalibrationFeed(_calib(real_faces[:5]), 2, tmp_path / "c.cache", other, upload).read_cache() is None
    with pytest.raises(DataError, match="one input"):
        feed.next_batch(["a", "b"])


# -- build plans ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "source, precision, version, typed, flags, calibrate",
    [
        ("fp32", "fp32", "10.3.0.30", True, (), False),
        ("fp16", "fp16", "10.3.0.30", True, (), False),
        ("int8", "int8", "10.3.0.30", True, (), False),
        ("fp32", "fp16", "10.3.0.30", False, ("FP16",), False),
        ("fp32", "int8", "10.3.0.30", False, ("INT8", "FP16"), True),
        ("fp32", "fp32", "8.5.2.2", False, (), False),
        ("fp16", "fp16", "8.5.2.2", False, ("FP16",), False),
        ("int8", "int8", "8.6.2.3", False, ("INT8",), False),
        ("fp32", "int8", "8.5.2.2", False, ("INT8", "FP16"), True),
        ("fp16", "fp16", "11.0.0", True, (), False),
    ],
)
def test_build_plans(source, precision, version, typed, flags, calibrate):
    plan = plan_build(source, precision, version, has_calib=True)
    assert (plan.strongly_typed, plan.flags, plan.calibrate) == (typed, flags, calibrate)


@pytest.mark.parametrize(
    "source, precision, version, calib, message",
    [
        ("fp32", "bf16", "10.3.0.30", True, r"unknown TensorRT precision 'bf16'; choose fp32, fp16, int8"),
        ("fp32", "int8", "10.3.0.30", False, r"implicit INT8 .* needs a calibration set: --calib"),
        ("fp32", "int8", "11.0.0", True, r"TensorRT 11.0.0 builds only strongly typed .* --to onnx-int8"),
        ("fp32", "fp16", "11.0.0", True, r"--to onnx-fp16"),
        ("fp16", "int8", "10.3.0.30", True, r"the ONNX file is fp16"),
        ("int8", "fp32", "8.6.2.3", True, r"the ONNX file is int8"),
    ],
)
def test_impossible_builds_say_how_to_fix_them(source, precision, version, calib, message):
    with pytest.raises(DataError, match=message):
        plan_build(source, precision, version, has_calib=calib)


@pytest.mark.parametrize(
    "source, precision, version, typed",
    [
        ("fp32", "fp16", "10.3.0.30", True),
        ("fp32", "int8", "10.3.0.30", True),
        ("fp32", "fp16", "11.4.1", True),
        ("fp32", "fp32", "10.3.0.30", False),
        ("fp16", "fp16", "10.3.0.30", False),  # already typed
        ("fp32", "fp16", "8.6.2.3", False),  # TensorRT 8.x: builder flags (no STRONGLY_TYPED before 9)
        ("fp32", "int8", "8.5.2.2", False),
    ],
)
def test_tensorrt_10_prefers_the_typed_onnx(source, precision, version, typed):
    assert prefers_typed(source, precision, version) is typed


def test_the_typed_sibling_is_used_only_when_made_from_this_float_onnx(fusion_onnx, real_faces, tmp_path):
    from fsanet.export.fp16 import to_fp16

    float_onnx = tmp_path / "fusion.onnx"
    shutil.copy(fusion_onnx, float_onnx)
    shutil.copy(f"{fusion_onnx}.json", f"{float_onnx}.json")
    assert typed_sibling(float_onnx, "fp16") == tmp_path / "fusion-fp16.onnx"
    assert choose_source(float_onnx, "fp16", "8.6.2.3", None, None) == (float_onnx, "as given")
    # no faces to verify a new FP16 file on: the float file with the FP16 flag, said so
    assert choose_source(float_onnx, "fp16", "10.3.0.30", None, None)[1].startswith("float ONNX with builder flags")
    to_fp16(float_onnx, typed_sibling(float_onnx, "fp16"), real_faces[:16], "16 real faces")
    path, why = choose_source(float_onnx, "fp16", "10.3.0.30", None, None)
    assert path == tmp_path / "fusion-fp16.onnx" and "strongly typed" in why
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(float_onnx, other / "fusion.onnx")
    shutil.copy(typed_sibling(float_onnx, "fp16"), other / "fusion-fp16.onnx")
    sidecar = json.loads(open(f"{float_onnx.parent / 'fusion-fp16.onnx'}.json").read())
    sidecar["float_source"]["sha256"] = "0" * 64  # made from another float file
    (other / "fusion-fp16.onnx.json").write_text(json.dumps(sidecar))
    shutil.copy(f"{float_onnx}.json", other / "fusion.onnx.json")
    assert choose_source(other / "fusion.onnx", "fp16", "10.3.0.30", None, None)[0] == other / "fusion.onnx"


def test_bad_arguments_are_refused_before_tensorrt_is_needed(fusion_onnx, tmp_path):
    with pytest.raises(DataError, match=r"\.engine or \.plan"):
        build_engine(fusion_onnx, tmp_path / "fusion.trt")
    with pytest.raises(DataError, match="no such ONNX file"):
        build_engine(tmp_path / "missing.onnx", tmp_path / "fusion.engine")
    with pytest.raises(DataError, match="must be positive"):
        build_engine(fusion_onnx, tmp_path / "fusion.engine", workspace_mb=0)


def test_missing_tensorrt_names_how_to_install_it(fusion_onnx, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on a machine without TensorRT
    with pytest.raises(BackendUnavailable, match=r"python3-libnvinfer.*pip install tensorrt") as e:
        build_engine(fusion_onnx, tmp_path / "fusion.engine")
    assert e.value.exit_code == 2 and e.value.extra == "tensorrt"
    assert not (tmp_path / "fusion.engine").exists()


# -- what TensorRT's ONNX parser needs --------------------------------------------------------------
def test_the_fused_onnx_is_what_tensorrt_10_parses(fusion_onnx):
    facts = trt_onnx.inspect_model(onnx.load(str(fusion_onnx)), fusion_onnx, "10.3.0.30")
    assert facts.problems == []
    assert (facts.input_name, facts.input_shape[1:], facts.input_dtype) == ("input", (3, 64, 64), "float")
    assert facts.dynamic_batch and facts.output_names == ["angles"] and facts.precision == "fp32"
    assert facts.opset == 18 and set(facts.ops) <= trt_onnx.SUPPORTED_OPS


def test_tensorrt_8_gets_an_equivalent_opset_17_graph(fusion_onnx, real_faces, tmp_path):
    import onnxruntime as ort

    facts = trt_onnx.inspect_model(onnx.load(str(fusion_onnx)), fusion_onnx, "8.6.2.3")
    assert facts.problems == ["opset 18 is above 17, the newest TensorRT 8.6.2.3 reads"]
    parsed, facts17 = trt_onnx.prepare(fusion_onnx, "8.6.2.3", tmp_path)
    assert parsed != fusion_onnx and facts17.opset == 17 and facts17.problems == []
    assert trt_onnx.prepare(fusion_onnx, "10.3.0.30", tmp_path)[0] == fusion_onnx  # 10.x reads opset 18
    x = InputFormat().prepare(real_faces[:64])
    before = ort.InferenceSession(str(fusion_onnx)).run(None, {"input": x})[0]
    after = ort.InferenceSession(str(parsed)).run(None, {"input": x})[0]
    np.testing.assert_array_equal(after, before)


def _tiny_model(nodes, inits=(), shape=("batch", 3, 64, 64), opset=18):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("angles", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_unsigned_or_asymmetric_qdq_is_refused_with_the_fix():
    inits = [
        numpy_helper.from_array(np.array(0.5, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.uint8), "z"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"], name="q_input"),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["angles"], name="dq_input"),
    ]
    facts = trt_onnx.inspect_model(_tiny_model(nodes, inits), "qdq.onnx", "10.3.0.30")
    assert facts.precision == "int8"
    (problem,) = facts.problems
    assert "2 Q/DQ nodes" in problem and "q_input" in problem and "uint8 zero point" in problem
    assert "--to onnx-int8" in problem and "sign_activations" in problem
    with pytest.raises(ExportError, match="qdq.onnx is not ready for TensorRT"):
        trt_onnx.check(facts)


def test_unsupported_ops_shapes_and_dynamic_axes_are_named():
    nodes = [
        helper.make_node("Shape", ["input"], ["shape"], name="shape_of_input"),
        helper.make_node("Squeeze", ["input", "shape"], ["sq"], name="squeeze_dyn"),
        helper.make_node("Unique", ["sq"], ["angles"], name="unique_1"),
    ]
    problems = trt_onnx.inspect_model(_tiny_model(nodes, shape=(1, 3, "h", 64)), "m.onnx").problems
    assert len(problems) == 3
    assert "input 'input' has shape (1, 3, 'h', 64); TensorRT needs static C, H, W" in problems[0]
    assert "['Unique']" in problems[1] and "unique_1 (Unique)" in problems[1]
    assert "Squeeze 'squeeze_dyn': input 'shape' must be a constant" in problems[2]


def test_unreadable_onnx_is_an_export_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(ExportError, match="bad.onnx: not a readable ONNX file"):
        trt_onnx.prepare(bad, "10.3.0.30", tmp_path)


# -- on a machine with TensorRT and a CUDA GPU (a Jetson) ------------------------------------------
def _tensorrt_and_gpu():
    pytest.importorskip("tensorrt", reason="TensorRT not installed")
    from fsanet.runtimes.tensorrt import import_cudart

    rt = import_cudart()
    err, count = rt.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        pytest.skip("no CUDA GPU")


@pytest.fixture(scope="module")
def fp16_engine(fusion_onnx, real_faces, tmp_path_factory):
    _tensorrt_and_gpu()
    out = tmp_path_factory.mktemp("trt") / "fusion-fp16.engine"
    timing = out.parent / "timing.cache"
    build_engine(fusion_onnx, out, "fp16", max_batch=32, timing_cache=timing, verify=real_faces, verify_name="real")
    return out


def test_fp16_engine_matches_onnx_runtime_on_real_faces(fp16_engine, fusion_onnx, real_faces):
    from fsanet import runtimes
    from fsanet.accuracy import drift
    from fsanet.manifest import read_sidecar

    manifest = read_sidecar(fp16_engine)
    assert manifest["precision"] == "fp16" and manifest["input"]["max_batch"] == 32
    assert manifest["verification"]["drift_mean_deg"] <= 0.05
    assert (fp16_engine.parent / "timing.cache").stat().st_size > 0
    assert "TensorRT" in (fp16_engine.parent / "fusion-fp16.engine.log").read_text()
    with runtimes.open(fp16_engine) as trt_rt, runtimes.open(fusion_onnx) as ref:
        assert trt_rt.backend == "tensorrt" and trt_rt.fixed_batch == 32
        d = drift(trt_rt.predict(real_faces), ref.predict(real_faces))  # 1,207 faces: many engine batches
    assert d["mean"] <= 0.05 and d["max"] <= 1.0


def test_implicit_int8_calibrates_once_then_reuses_its_keyed_cache(fusion_onnx, real_faces, tmp_path):
    _tensorrt_and_gpu()
    calib = _calib(real_faces[:256])
    first = build_engine(fusion_onnx, tmp_path / "a.engine", "int8", calib, calib_batch=32)
    second = build_engine(fusion_onnx, tmp_path / "b.engine", "int8", calib, calib_batch=32)
    assert first["calibration"]["batches"] == 8 and not first["calibration"]["cache_reused"]
    assert second["calibration"]["cache_reused"] and second["calibration"]["sha256"] == calib.sha256
    other = build_engine(fusion_onnx, tmp_path / "c.engine", "int8", _calib(real_faces[256:512]), calib_batch=32)
    assert not other["calibration"]["cache_reused"]
