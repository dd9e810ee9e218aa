"""A kit of the authors' fusion (FP32 ONNX, FP32 and INT8 TFLite) on real HELEN faces: it checks
clean with the FP32 angles equal to the golden ones, a changed file exits 2, an INT8 calibrated
wrongly exits 1, and a device with ONNX Runtime alone runs the ONNX and skips the TFLite files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

FAST = ["--runs", "4", "--warmup", "1"]
GOLDEN = 96  # HELEN faces in the golden set (never calibrated on)


@pytest.fixture(scope="module")
def fusion_kit(fusion_onnx, fusion_tflite, fusion_tflite_int8, shared_data, fsanet_wheel, tmp_path_factory) -> Path:
    from fsanet.kit.bundle import make_bundle

    out = tmp_path_factory.mktemp("fusion-kit") / "fusion-kit"
    helen = shared_data / "real-faces" / "helen-trainset"
    arts = [fusion_onnx, fusion_tflite, fusion_tflite_int8]
    make_bundle(arts, out, faces=str(helen), count=GOLDEN, wheel=fsanet_wheel)
    return out


@pytest.fixture(scope="module")
def fusion_check(fusion_kit, tmp_path_factory) -> dict:
    from fsanet.cli import main

    out = tmp_path_factory.mktemp("fusion-check")
    code = main(["check", str(fusion_kit), *FAST, "-o", str(out)])
    result = json.loads((out / "check.json").read_text())
    return {"code": code, "result": result, "md": (out / "check.md").read_text()}


def test_the_kit_holds_the_reference_angles_and_every_manifest(fusion_kit, fusion_onnx):
    m = json.loads((fusion_kit / "bundle.json").read_text())
    assert m["reference"] == "fusion.onnx" and m["golden"]["count"] == GOLDEN and not m["golden"]["labelled"]
    assert [a["precision"] for a in m["artifacts"]] == ["fp32", "fp32", "int8"]
    assert {"fusion.onnx.json", "fusion.tflite.json", "fusion-int8.tflite.json"} <= set(m["files"])
    from fsanet import runtimes

    with np.load(fusion_kit / "golden.npz") as z, runtimes.open(fusion_onnx) as rt:
        assert np.array_equal(z["reference"], rt.predict(z["crops"]))


def test_the_fusion_kit_checks_clean(fusion_check):
    r = fusion_check["result"]
    assert fusion_check["code"] == 0, r["violation_lines"] + list(r["errors"].values())
    arts = r["artifacts"]
    assert {n: a["verdict"] for n, a in arts.items()} == {
        "fusion.onnx": "PASS", "fusion.tflite": "PASS", "fusion-int8.tflite": "PASS"
    }  # fmt: skip
    assert arts["fusion.onnx"]["drift"]["max"] <= 1e-3  # the FP32 angles are the golden ones
    assert arts["fusion.tflite"]["drift"]["max"] <= 1e-3  # FP32 TFLite: the same model, another runtime
    assert 0 < arts["fusion-int8.tflite"]["drift"]["mean"] <= 0.25
    assert all(a["drift_to_host"]["max"] <= 1e-3 for a in arts.values())  # same machine: the same angles
    assert any("max_mae_increase: the golden set has no labels" in n for n in r["not_judged"])
    assert r["recommended"]["artifact"] in arts
    assert "verdict: PASS" in fusion_check["md"] and "Recommended for this device" in fusion_check["md"]


def test_a_changed_artifact_exits_2_naming_it(fusion_kit, tmp_path, cli, capsys):
    kit = shutil.copytree(fusion_kit, tmp_path / "kit")
    victim = kit / "fusion-int8.tflite"
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0xFF
    victim.write_bytes(bytes(data))
    code, _, err = cli(capsys, "check", kit, *FAST, "-o", tmp_path / "rep")
    assert code == 2 and f"{victim}: sha256" in err and not (tmp_path / "rep").exists()


@pytest.fixture(scope="module")
def dark_int8(fusion_onnx, shared_data, tmp_path_factory) -> Path:
    """The fusion's INT8 ONNX calibrated on AFW crops at a sixth of their brightness (a
    calibration script that scaled its images wrongly): real faces overflow its ranges."""
    from fsanet.export.quantize import quantize_onnx

    from fsanet import calib
    from fsanet.data import open_faces

    d = tmp_path_factory.mktemp("dark-int8")
    afw = open_faces(shared_data / "real-faces" / "afw").images()[:64]
    np.savez(d / "dark.npz", image=afw // 6, pose=np.zeros((len(afw), 3), np.float32))
    out = d / "fusion-int8.onnx"
    quantize_onnx(fusion_onnx, calib.build(d / "dark.npz", 64), out)
    return out


def test_a_wrongly_calibrated_int8_exits_1(fusion_onnx, dark_int8, shared_data, fsanet_wheel, tmp_path, cli, capsys):
    kit = tmp_path / "kit"
    helen = shared_data / "real-faces" / "helen-trainset"
    argv = [fusion_onnx, dark_int8, "--faces", helen, "--count", GOLDEN, "--wheel", fsanet_wheel]
    code, _, err = cli(capsys, "bundle", *argv, "-o", kit)
    assert code == 0, err
    code, out, _ = cli(capsys, "check", kit, *FAST, "--no-latency", "-o", tmp_path / "rep")
    assert code == 1, out
    r = json.loads((tmp_path / "rep" / "check.json").read_text())
    assert r["artifacts"]["fusion-int8.onnx"]["verdict"] == "FAIL"
    assert r["artifacts"]["fusion-int8.onnx"]["drift"]["mean"] > 0.25
    assert r["artifacts"]["fusion.onnx"]["verdict"] == "PASS"
    assert "fusion-int8.onnx: drift.mean = " in out and "limit 0.25" in out


def test_a_device_with_onnx_runtime_alone_skips_the_tflite_files(fusion_kit, tmp_path, runtime_only):
    blocked = "ai_edge_litert,tflite_runtime,tensorflow"
    done = runtime_only(blocked, "check", fusion_kit, *FAST, "-o", tmp_path / "rep")
    assert done.returncode == 0, done.stdout + done.stderr
    r = json.loads((tmp_path / "rep" / "check.json").read_text())
    assert list(r["artifacts"]) == ["fusion.onnx"] and r["artifacts"]["fusion.onnx"]["drift"]["max"] <= 1e-3
    assert {n: s["extra"] for n, s in r["skipped"].items()} == {
        "fusion.tflite": "tflite",
        "fusion-int8.tflite": "tflite",
    }
    assert "skipped fusion.tflite" in done.stdout and "fsanet-edge[tflite]" in done.stdout
