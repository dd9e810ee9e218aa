"""Every target's manifest states the same facts under the same keys (fsanet.export.artifact):
one small single-model checkpoint exported to every CPU target, and the TensorRT engine's
manifest built by its pure function from fake build results (TensorRT is not installed here)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from fsanet.export import artifact

from fsanet import calib
from fsanet.manifest import read_sidecar

TARGETS = ("onnx", "onnx-fp16", "onnx-int8", "tflite", "tflite-fp16", "tflite-dynamic", "tflite-int8")
# the contract, written out: every manifest has these keys, ONNX files and engines also `opset`
KEYS = {
    "format", "version", "input", "output", "precision", "backend_format", "members", "source", "float_source",
    "calibration", "quantization", "verification", "tools", "built_on", "file", "sha256", "size_bytes",
}  # fmt: skip
ONNX_KEYS = KEYS | {"opset"}
ENGINE_KEYS = ONNX_KEYS | {"source_onnx", "tensorrt", "gpu", "build_log"}
CALIBRATION = {"source", "count", "sampling", "seed", "sha256"}
ENTROPY_CALIBRATOR = {"method", "batch", "batches", "cache", "cache_key", "cache_reused"}  # cache_key: the sidecar
VERIFICATION = {"against", "faces", "count", "drift_mean_deg", "drift_max_deg", "max_abs_diff_deg"}
SEARCH = {"max_drift_deg", "op_types_in", "trajectory", "chosen"}
TRIAL = {"op_types", "drift_mean_deg", "drift_max_deg", "kept", "error"}


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    import torch

    from fsanet import checkpoint
    from fsanet.model import build

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "one.pt"
    return checkpoint.save(build("fsanet-1x1-capsule").eval(), path)


@pytest.fixture(scope="module")
def calib_set():
    return calib.build("synthetic:60:3", 24, seed=0)


@pytest.fixture(scope="module")
def exported(small_checkpoint, calib_set, tmp_path_factory) -> dict[str, Path]:
    from fsanet.export.targets import export_targets

    cal = calib_set.save(tmp_path_factory.mktemp("calib") / "calib.npz")
    out = tmp_path_factory.mktemp("targets")
    rows = export_targets(small_checkpoint, list(TARGETS), out, cal)
    return {r["target"]: Path(r["file"]) for r in rows}


def test_the_contract_is_the_one_artifact_writes():
    assert set(artifact.MANIFEST_KEYS) | set(artifact.SIDECAR_KEYS) == KEYS
    assert set(artifact.CALIBRATION_KEYS) == CALIBRATION and set(artifact.VERIFICATION_KEYS) == VERIFICATION
    assert set(artifact.SEARCH_KEYS) == SEARCH and set(artifact.TRIAL_KEYS) == TRIAL


def test_every_target_writes_the_same_keys_for_the_same_facts(exported, small_checkpoint, calib_set):
    from fsanet.files import sha256
    from fsanet.machine import fingerprint

    assert sorted(exported) == sorted(TARGETS)
    manifests = {t: read_sidecar(p) for t, p in exported.items()}  # checked against the files
    float_files = {"onnx": exported["onnx"].name, "tflite": exported["tflite"].name}
    for target, m in manifests.items():
        family = target.split("-")[0]
        assert set(m) == (ONNX_KEYS if family == "onnx" else KEYS), target
        assert set(m["verification"]) == VERIFICATION, target
        assert m["source"] == manifests["onnx"]["source"], target
        assert m["source"]["sha256"] == sha256(small_checkpoint) and m["sha256"] == sha256(exported[target])
        assert m["backend_format"] == family and m["members"] == manifests["onnx"]["members"]
        assert m["built_on"]["cpu"] == fingerprint()["cpu"] and m["built_on"]["isa"] == fingerprint()["isa"]
        if family == "onnx":
            assert m["opset"] == 18, target
        if target in ("onnx", "tflite"):  # made from the checkpoint, checked against PyTorch
            assert m["precision"] == "fp32" and m["verification"]["against"] == "pytorch"
            assert m["float_source"] is None and m["calibration"] is None and m["quantization"] is None
            continue
        assert m["float_source"] == {"file": float_files[family], "sha256": manifests[family]["sha256"]}, target
        assert m["verification"]["against"] == exported["onnx"].name, target  # drift from the float ONNX
        assert m["verification"]["count"] == len(calib_set), target  # judged on the calibration faces
        assert m["verification"]["drift_mean_deg"] <= m["verification"]["drift_max_deg"]
        assert isinstance(m["quantization"], dict), target
        if target.endswith("int8"):
            assert set(m["calibration"]) == CALIBRATION and m["calibration"]["sha256"] == calib_set.sha256
            assert m["quantization"]["search"] is None  # no --int8-max-drift
        else:
            assert m["calibration"] is None, target
    for target in ("onnx", "onnx-fp16", "onnx-int8"):  # the ONNX files carry the same manifest inside
        import json

        import onnx

        from fsanet.manifest import METADATA_KEY

        props = {p.key: p.value for p in onnx.load(str(exported[target])).metadata_props}
        embedded = json.loads(props[METADATA_KEY])
        assert embedded == {k: v for k, v in manifests[target].items() if k not in artifact.SIDECAR_KEYS}


def test_both_accuracy_searches_write_one_record(exported, calib_set, tmp_path):
    """`--int8-max-drift` drives the ONNX and the TFLite search through one interface: the same
    `quantization.search` record, and otherwise the manifest of a plain INT8 export."""
    from fsanet.export.quantize import quantize_with_budget
    from fsanet.export.tflite_quantize import quantize_tflite

    faces, limit = calib_set.crops, 1000.0  # the shape is on trial here, not the accuracy
    reference = artifact.predict(exported["onnx"], faces, "test")
    searched = {
        "onnx": quantize_with_budget(exported["onnx"], calib_set, tmp_path / "s.onnx", limit, faces, "calib"),
        "tflite": quantize_tflite(
            exported["tflite"], tmp_path / "s.tflite", "int8", reference, faces, "calib", calib_set, max_drift=limit
        ),
    }
    for family, m in searched.items():
        plain = read_sidecar(exported[f"{family}-int8"])
        assert set(m) == set(plain) and set(m["quantization"]) == set(plain["quantization"]), family
        assert m == read_sidecar(tmp_path / f"s.{family}")  # what it returns is what it wrote
        search = m["quantization"]["search"]
        assert set(search) == SEARCH and search["max_drift_deg"] == limit, family
        assert search["trajectory"] and all(set(t) == TRIAL for t in search["trajectory"]), family
        assert any(t["kept"] and t["op_types"] == search["chosen"] for t in search["trajectory"]), family
    assert searched["onnx"]["quantization"]["search"]["op_types_in"] == "float"
    assert searched["onnx"]["quantization"]["float_op_types"] == sorted(
        set(searched["onnx"]["quantization"]["search"]["chosen"]) | {"AveragePool"}
    )
    assert searched["tflite"]["quantization"]["search"]["op_types_in"] == "int8"
    assert searched["tflite"]["quantization"]["search"]["chosen"]  # at least one op type in INT8
    assert (
        searched["tflite"]["quantization"]["int8 weights and activations"]
        == (searched["tflite"]["quantization"]["search"]["chosen"])
    )


def _engine(source: Path, precision: str, calib_set=None) -> dict:
    """The manifest `build_engine` would write, from faked build results (plan, parsed facts,
    profile, GPU); `calib_set`: an implicit INT8 build that fed it to the entropy calibrator."""
    from fsanet.export.tensorrt import _Built, _engine_manifest, plan_build

    src = artifact.read_source(source, "tensorrt")
    calibrated = calib_set is not None
    version = "8.6.2.3" if calibrated else "10.3.0.30"  # implicit INT8 needs TensorRT < 10
    built = _Built(
        engine=Path("candidate.engine"),
        plan=plan_build(src["precision"], precision, version, calibrated),
        facts=SimpleNamespace(
            precision=src["precision"], opset=17 if calibrated else 18, input_name="input", dynamic_batch=True
        ),
        shapes=((1, 3, 64, 64), (16, 3, 64, 64), (64, 3, 64, 64)),
        gpu={"name": "Orin", "compute_capability": "8.7"},
        feed=SimpleNamespace(batch_size=8, batches_fed=3, used_cache=False) if calibrated else None,
        cache_file=Path("calib-abc.cache") if calibrated else None,
        platform={"fast_fp16": True, "fast_int8": True},
        dla=None,
        layers='{"Layers": []}',
    )
    opts = {"workspace_mb": 1024, "timing_cache": None, "optimization_level": None}
    names = {
        "log": "one.engine.log",
        "layers": "one.engine.layers.json",
        "engine": "one.engine",
        "source_choice": "given",
    }
    return _engine_manifest(src, built, version, calib_set, opts, names)


def test_engine_manifest_has_the_same_keys_and_keeps_the_opset(exported, calib_set):
    onnx_float, onnx_int8 = read_sidecar(exported["onnx"]), read_sidecar(exported["onnx-int8"])
    sidecar = set(artifact.SIDECAR_KEYS)  # added when the engine is written

    implicit = _engine(exported["onnx"], "int8", calib_set)  # TensorRT 8.6: entropy calibrator
    assert set(implicit) | sidecar == ENGINE_KEYS and not sidecar & set(implicit)
    assert implicit["opset"] == onnx_float["opset"] == 18  # the source ONNX's opset (was dropped)
    assert implicit["precision"] == "int8" and implicit["backend_format"] == "tensorrt-engine"
    assert set(implicit["calibration"]) == CALIBRATION | ENTROPY_CALIBRATOR
    assert implicit["calibration"]["sha256"] == calib_set.sha256 and implicit["calibration"]["batches"] == 3
    assert implicit["float_source"] == {"file": exported["onnx"].name, "sha256": onnx_float["sha256"]}
    assert implicit["source_onnx"]["sha256"] == onnx_float["sha256"] and implicit["verification"] is None
    assert implicit["input"]["max_batch"] == 64 and implicit["tensorrt"]["parsed_opset"] == 17

    explicit = _engine(exported["onnx-int8"], "int8")  # TensorRT 10: the Q/DQ file
    assert set(explicit) | sidecar == ENGINE_KEYS
    assert explicit["opset"] == 18 and explicit["calibration"] == onnx_int8["calibration"]
    assert set(explicit["calibration"]) == CALIBRATION
    assert explicit["float_source"] == onnx_int8["float_source"]  # the chain's float file, not the Q/DQ one
    assert explicit["source_onnx"]["file"] == exported["onnx-int8"].name
    assert explicit["quantization"] == onnx_int8["quantization"]
