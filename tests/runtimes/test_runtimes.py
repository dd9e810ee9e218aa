from __future__ import annotations

import shutil

import numpy as np
import pytest
from fsanet.runtimes.estimator import PoseEstimator

from fsanet import runtimes
from fsanet.accuracy import mae
from fsanet.cli import main
from fsanet.data import open_faces
from fsanet.errors import BackendUnavailable, DataError


@pytest.fixture(scope="module")
def aflw(shared_data):
    faces = open_faces(shared_data / "aflw2000-sample")
    return faces, faces.images()


def test_open_picks_the_backend_and_both_agree(fusion_checkpoint, fusion_onnx, real_faces):
    with runtimes.open(fusion_checkpoint) as pt, runtimes.open(fusion_onnx, threads=1) as ox:
        assert (pt.backend, ox.backend) == ("torch", "onnxruntime")
        np.testing.assert_allclose(pt.predict(real_faces[:50]), ox.predict(real_faces[:50]), atol=1e-3)


def test_foreign_conversion_of_the_official_model_gives_the_authors_numbers(reference_models, aflw):
    # FACTS: the authors' 1x1 graph on aflw2000-sample: 4.00 / 7.36 / 1.71 / 4.36
    faces, crops = aflw
    with runtimes.open(reference_models["foxtracker"]) as rt:
        m = mae(rt.predict(crops), faces.poses)
    assert [round(m[a], 2) for a in ("yaw", "pitch", "roll")] == pytest.approx([4.00, 7.36, 1.71], abs=0.011)


def test_foreign_port_with_normalised_input(reference_models, aflw):
    faces, crops = aflw
    with runtimes.open(reference_models["omasaht-1x1"]) as rt:
        assert rt.fixed_batch == 1  # exported with batch 1: larger batches run in pieces
        pred = rt.predict(crops)
    assert pred.shape == (16, 3) and mae(pred, faces.poses)["mean"] < 6


def test_foreign_file_without_format_is_an_error(shared_data):
    path = shared_data / "reference-models" / "fsanet-1x1-iter-688590.onnx"
    with pytest.raises(DataError, match="no fsanet manifest.*@nhwc"):
        runtimes.open(path)


def test_estimator_predicts_from_landmarks_like_the_official_crop(fusion_onnx, shared_data, aflw):
    from fsanet.data.mat import read_mat

    faces, crops = aflw
    image_path = shared_data / "aflw2000-sample" / faces.names[0]
    import cv2

    _, landmarks = read_mat(image_path.with_suffix(".mat"))
    with PoseEstimator(runtimes.open(fusion_onnx)) as est:
        from_image = est.predict_image(cv2.imread(str(image_path)), landmarks=[landmarks])
        from_crop = est.predict(crops[:1])
    np.testing.assert_allclose(from_image, from_crop, atol=1e-5)


def test_bad_inputs_are_clear_errors(fusion_onnx):
    with runtimes.open(fusion_onnx) as rt:
        with pytest.raises(DataError, match=r"\(N, 64, 64, 3\)"):
            rt.predict(np.zeros((2, 32, 32, 3), np.uint8))
        with pytest.raises(DataError, match="NaN"):
            rt.predict(np.full((1, 64, 64, 3), np.nan, np.float32))
        with pytest.raises(DataError, match="float32"):
            rt.infer(np.zeros((1, 3, 64, 64), np.float64))
        with pytest.raises(DataError, match="per face"):
            rt.infer(np.zeros((1, 64, 64, 3), np.float32))


def test_missing_execution_provider_says_what_to_install(fusion_onnx):
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider.*onnxruntime-gpu"):
        runtimes.open(fusion_onnx, provider="cuda")


def test_cuda_device_without_a_gpu_is_a_clear_error(fusion_checkpoint):
    import torch

    if torch.cuda.is_available():
        with runtimes.open(fusion_checkpoint, device="cuda") as rt:
            assert rt.predict(np.zeros((2, 64, 64, 3), np.uint8)).shape == (2, 3)
    else:
        with pytest.raises(DataError, match=r"device 'cuda'.*sees no CUDA GPU.*use device 'cpu'"):
            runtimes.open(fusion_checkpoint, device="cuda")


@pytest.mark.parametrize("case", ["not-onnx", "truncated", "hash-mismatch", "unknown-suffix"])
def test_bad_model_files_exit_2_naming_the_file(case, fusion_onnx, shared_data, tmp_path, capsys):
    bad = tmp_path / "model.onnx"
    if case == "not-onnx":
        bad.write_text("this is not a model")
    elif case == "truncated":
        bad.write_bytes(fusion_onnx.read_bytes()[:50_000])
    elif case == "hash-mismatch":
        shutil.copy(fusion_onnx, bad)
        shutil.copy(f"{fusion_onnx}.json", f"{bad}.json")
        with open(bad, "ab") as f:
            f.write(b"\0")
    else:
        bad = tmp_path / "model.tflite2"
        bad.write_bytes(b"x")
    code = main(["eval", str(bad), "--data", str(shared_data / "aflw2000-sample")])
    err = capsys.readouterr().err
    assert code == 2 and bad.name in err
    if case == "hash-mismatch":
        assert "does not match its manifest" in err


def test_predict_command_on_landmarked_photos_and_crops(fusion_onnx, shared_data, tmp_path, capsys):
    import cv2

    photo = sorted((shared_data / "real-faces" / "afw").glob("*.jpg"))[0]
    crop = tmp_path / "crop.png"
    cv2.imwrite(str(crop), open_faces(shared_data / "aflw2000-sample").load(0))
    assert main(["predict", str(fusion_onnx), str(photo), str(crop)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "(landmarks)" in out[0] and "(crop)" in out[1]
    assert all("yaw" in line for line in out)


def test_onnx_inference_never_imports_torch_or_tensorflow(fusion_onnx, real_faces, tmp_path):
    import subprocess
    import sys

    np.save(tmp_path / "crops.npy", real_faces[:4])
    code = (
        "import sys, numpy as np; from fsanet import runtimes; "
        f"rt = runtimes.open({str(fusion_onnx)!r}); a = rt.predict(np.load({str(tmp_path / 'crops.npy')!r})); "
        "assert a.shape == (4, 3); heavy = {'torch', 'tensorflow'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
