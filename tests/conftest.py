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


def pytest_collection_modifyitems(items) -> None:
    """Mark each test `integration` (needs ../shared/data, or slow) or `unit` (neither).

    A test is `integration` when its fixture closure holds `shared_data` (directly or through
    official, fusion_h5, real_faces, fusion_onnx, ...) or when it carries an explicit
    `@pytest.mark.integration` (slow ones, and those that ask for data by getfixturevalue).
    `pytest -m unit` (`make test-unit`) runs the rest: quick, no shared data.
    """
    for item in items:
        if item.get_closest_marker("integration") is not None:
            continue  # marked by hand
        needs_data = "shared_data" in getattr(item, "fixturenames", ())
        item.add_marker(pytest.mark.integration if needs_data else pytest.mark.unit)


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
def fusion_onnx_int8(fusion_onnx, afw_calib, helen, tmp_path_factory) -> Path:
    """The INT8 ONNX as `fsanet export --to onnx-int8` writes it (calibrated on AFW, verified on HELEN)."""
    from fsanet.export.quantize import quantize_onnx

    out = tmp_path_factory.mktemp("onnx-int8") / "fusion-int8.onnx"
    quantize_onnx(fusion_onnx, afw_calib, out, verify=helen[0], verify_name="helen")
    return out


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


def write_tiny_onnx(path: Path, kind: str = "mean", shape=("N", 3, 64, 64)) -> Path:
    """A few-node ONNX model with no fsanet manifest (a foreign file: give it as PATH@nchw,bgr,raw).

    kind "mean": the channel means of the input as its three 'angles' (finite, depends on the
    input); "nan": the same times 0 divided by 0 (every angle NaN); "five": five outputs per face.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]), helper.make_node("Flatten", ["g"], ["f"], axis=1)]
    inits, out, out_shape = [], "f", ["N", 3]
    if kind == "nan":
        inits = [numpy_helper.from_array(np.zeros(1, np.float32), "zero")]
        nodes += [helper.make_node("Mul", ["f", "zero"], ["m"]), helper.make_node("Div", ["m", "zero"], ["y"])]
        out = "y"
    elif kind == "five":
        inits = [numpy_helper.from_array(np.ones((3, 5), np.float32), "w")]
        nodes += [helper.make_node("MatMul", ["f", "w"], ["y"])]
        out, out_shape = "y", ["N", 5]
    graph = helper.make_graph(
        nodes,
        kind,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    """Foreign ONNX models as `fsanet` takes them on the command line (see write_tiny_onnx)."""
    d = tmp_path_factory.mktemp("tiny-models")
    spec = "@nchw,bgr,raw"
    return {
        "mean": f"{write_tiny_onnx(d / 'mean.onnx')}{spec}",
        "nan": f"{write_tiny_onnx(d / 'nan.onnx', 'nan')}{spec}",
        "five": f"{write_tiny_onnx(d / 'five.onnx', 'five')}{spec}",
        "nhwc128": f"{write_tiny_onnx(d / 'nhwc128.onnx', shape=('N', 128, 128, 3))}{spec}",
    }


def write_noise_faces(folder: Path, count: int = 4, seed: int = 0) -> Path:
    """`count` 120x120 noise photos, each with 68 `.pts` landmarks inside it: a face folder in
    the 300-W layout for tests that need no real faces (no detector involved)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        cv2.imwrite(str(folder / f"face{i}.jpg"), rng.integers(0, 256, (120, 120, 3), dtype=np.uint8))
        pts = rng.uniform(30, 90, (68, 2))
        (folder / f"face{i}.pts").write_text("\n".join(f"{x:.1f} {y:.1f}" for x, y in pts) + "\n")
    return folder


@pytest.fixture(scope="session")
def noise_faces(tmp_path_factory) -> Path:
    return write_noise_faces(tmp_path_factory.mktemp("noise-faces"))


def write_labelled_npz(path: Path, count: int = 6, seed: int = 0, images=None, poses=None) -> Path:
    """An official-layout `.npz` ('image' (N, 64, 64, 3) BGR uint8, 'pose' (N, 3) degrees)."""
    rng = np.random.default_rng(seed)
    if images is None:
        images = rng.integers(0, 256, (count, 64, 64, 3), dtype=np.uint8)
    if poses is None:
        poses = rng.uniform(-60, 60, (len(images), 3)).astype(np.float32)
    np.savez(path, image=images, pose=poses)
    return path


@pytest.fixture(scope="session")
def make_npz():
    """write_labelled_npz, for tests (test modules do not import conftest)."""
    return write_labelled_npz


@pytest.fixture(scope="session")
def make_onnx():
    return write_tiny_onnx


@pytest.fixture(scope="session")
def make_faces():
    return write_noise_faces
