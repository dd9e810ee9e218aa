"""The one way tests reach `../shared/data`: the `shared_data` fixture.

Set FSANET_SHARED_DATA to point elsewhere. Without the data a test skips, except under CI
(`CI` set), where it fails: a CI run that silently skipped the real-data tests proves nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OFFICIAL = "official/pre-trained"
FUSION_H5 = [
    f"{OFFICIAL}/300W_LP_models/{n}/{n}.h5"
    for n in ("fsanet_capsule_3_16_2_21_5", "fsanet_var_capsule_3_16_2_21_5", "fsanet_noS_capsule_3_16_2_192_5")
]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = Path(os.environ.get("FSANET_SHARED_DATA", DEFAULT))
    if not (path / "README.md").is_file():
        message = f"shared data not found at {path} (set FSANET_SHARED_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def official(shared_data) -> Path:
    """The authors' released weights and graphs."""
    return shared_data / OFFICIAL


@pytest.fixture(scope="session")
def fusion_h5(shared_data) -> list[Path]:
    """The three 300W-LP capsule models of FSA-Caps-Fusion: 1x1, var, w/o."""
    return [shared_data / f for f in FUSION_H5]


@pytest.fixture(scope="session")
def real_faces(shared_data) -> np.ndarray:
    """The 1,207 real faces of shared/data/real-faces, official crop, (N, 64, 64, 3) BGR uint8."""
    from fsanet.data import open_faces

    return open_faces(shared_data / "real-faces").images()


@pytest.fixture(scope="session")
def fusion_checkpoint(fusion_h5, tmp_path_factory) -> Path:
    from fsanet.importer import import_keras

    out = tmp_path_factory.mktemp("ckpt") / "fusion.pt"
    import_keras(fusion_h5, out)
    return out


@pytest.fixture(scope="session")
def fusion_onnx(fusion_checkpoint, real_faces, tmp_path_factory) -> Path:
    """The authors' 300W-LP fusion as one ONNX graph, verified on the 1,207 real faces."""
    from fsanet.export.onnx import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "fusion.onnx"
    return export_onnx(fusion_checkpoint, out, real_faces, "real-faces")


@pytest.fixture(scope="session")
def fusion_tflite(fusion_checkpoint, real_faces, tmp_path_factory) -> Path:
    """The fusion as FP32 TFLite (LiteRT-Torch), verified against PyTorch on a quarter of the real faces."""
    from fsanet.export.tflite import export_tflite

    out = tmp_path_factory.mktemp("tflite") / "fusion.tflite"
    export_tflite(fusion_checkpoint, out, real_faces[::4], "real faces")
    return out


@pytest.fixture(scope="session")
def afw_calib(shared_data):
    """96 AFW faces (official crop from the .pts landmarks) as a calibration set."""
    from fsanet import calib

    return calib.build(shared_data / "real-faces" / "afw", 96, seed=0)


@pytest.fixture(scope="session")
def helen(shared_data, fusion_onnx) -> tuple[np.ndarray, np.ndarray]:
    """A quarter of the HELEN faces (never calibrated on) and the float ONNX's angles on them."""
    from fsanet import runtimes
    from fsanet.data import open_faces

    faces = open_faces(shared_data / "real-faces" / "helen-trainset").images()[::4]
    with runtimes.open(fusion_onnx) as ref:
        return faces, ref.predict(faces)


@pytest.fixture(scope="session")
def fusion_tflite_int8(fusion_tflite, afw_calib, helen, tmp_path_factory) -> Path:
    """The fusion as INT8 TFLite, calibrated on AFW, judged on HELEN."""
    from fsanet.export.tflite_quantize import quantize_tflite

    out = tmp_path_factory.mktemp("tflite-int8") / "fusion-int8.tflite"
    quantize_tflite(fusion_tflite, out, "int8", helen[1], helen[0], "helen", afw_calib)
    return out


@pytest.fixture(scope="session")
def reference_models(shared_data) -> dict[str, str]:
    """Third-party ONNX ports with their input formats, as `fsanet` takes them on the command line."""
    r = shared_data / "reference-models"
    return {
        "foxtracker": f"{r / 'foxtracker_fsanet_capsule_official_weights.onnx'}@nhwc,bgr,raw",
        "omasaht-1x1": f"{r / 'fsanet-1x1-iter-688590.onnx'}@nchw,bgr,mean=127.5,std=128",
    }
