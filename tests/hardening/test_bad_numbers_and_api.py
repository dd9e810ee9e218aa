"""Bad numbers are refused, not cast; the Python API raises FsanetError subclasses only."""

from __future__ import annotations

import numpy as np
import pytest
from fsanet.runtimes.estimator import PoseEstimator

from fsanet import runtimes
from fsanet.accuracy import drift, mae
from fsanet.cli import main
from fsanet.data import open_faces
from fsanet.errors import DataError, FsanetError, ModelError
from fsanet.preprocess import check_crops, landmark_box


@pytest.fixture
def mean_rt(tiny_models):
    with runtimes.open(tiny_models["mean"]) as rt:
        yield rt


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.full((3, 64, 64, 3), 0.5, np.float32), "looks scaled to 0..1"),
        (np.full((3, 64, 64, 3), np.nan, np.float32), "NaN or infinite"),
        (np.full((3, 64, 64, 3), 300.0, np.float32), "0..255"),
        (np.full((3, 64, 64, 3), -1, np.int16), "0..255"),
        (np.full((3, 64, 64, 3), "a"), "dtype"),
    ],
)
def test_npz_images_that_are_not_pixels(images, message, make_npz, tmp_path):
    f = make_npz(tmp_path / "set.npz", images=images)
    with pytest.raises(DataError, match=message):
        open_faces(f)


def test_npz_float_pixels_in_range_are_rounded(make_npz, tmp_path):
    images = np.full((2, 64, 64, 3), 99.6, np.float32)
    assert open_faces(make_npz(tmp_path / "set.npz", images=images)).images().max() == 100


def test_eval_on_npz_scaled_to_one_exits_2(tiny_models, make_npz, tmp_path, capsys):
    f = make_npz(tmp_path / "set.npz", images=np.random.default_rng(0).random((3, 64, 64, 3), np.float32))
    assert main(["eval", tiny_models["mean"], "--data", str(f)]) == 2
    assert "set.npz" in capsys.readouterr().err


@pytest.mark.parametrize("value", [1e30, -1000.0, 255.5])
def test_crops_out_of_range_are_refused(value, mean_rt):
    crops = np.full((2, 64, 64, 3), value, np.float32)
    with pytest.raises(DataError, match="0..255"):
        mean_rt.predict(crops)
    with pytest.raises(DataError, match="0..255"):
        check_crops(crops)


@pytest.mark.parametrize("batch", [-1, 0, 2.5, "8", True])
def test_estimator_batch_must_be_a_positive_integer(batch, mean_rt):
    with pytest.raises(DataError, match="batch must be a positive integer"):
        PoseEstimator(mean_rt, batch=batch)


@pytest.mark.parametrize("threads", [0, -2, 1.5, "2"])
def test_runtime_threads_must_be_positive(threads, tiny_models):
    with pytest.raises(DataError, match="threads"):
        runtimes.open(tiny_models["mean"], threads=threads)


def test_a_closed_runtime_says_so(tiny_models):
    rt = runtimes.open(tiny_models["mean"])
    rt.close()
    with pytest.raises(DataError, match="closed"):
        rt.predict(np.zeros((1, 64, 64, 3), np.uint8))


def test_backend_failure_is_a_model_error(make_onnx, tmp_path):
    """A model whose graph fails at run time (a Reshape to a size the input cannot have)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "bad-reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(np.array([-1, 7], np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "bad.onnx")
    with runtimes.open(f"{tmp_path / 'bad.onnx'}@nchw") as rt, pytest.raises(ModelError, match="bad.onnx"):
        rt.predict(np.zeros((1, 64, 64, 3), np.uint8))


def test_foreign_model_shapes_are_checked_at_open(tiny_models):
    with pytest.raises(ModelError, match=r"needs \('N', 3, 64, 64\)"):
        runtimes.open(tiny_models["nhwc128"])
    with pytest.raises(ModelError, match=r"expected \(N, 3\) angles"):
        runtimes.open(tiny_models["five"])


def test_large_batches_run_in_bounded_pieces(mean_rt):
    calls = []
    run = mean_rt._run
    mean_rt._run = lambda x: calls.append(len(x)) or run(x)
    crops = np.random.default_rng(0).integers(0, 256, (1000, 64, 64, 3), dtype=np.uint8)
    angles = mean_rt.predict(crops)
    assert angles.shape == (1000, 3) and max(calls) <= 256 and sum(calls) == 1000
    np.testing.assert_allclose(angles, crops.mean(axis=(1, 2)), rtol=1e-4)  # the model's channel means


def test_accuracy_shapes_raise_data_error():
    with pytest.raises(DataError):
        mae(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(DataError):
        drift(np.zeros((0, 3)), np.zeros((0, 3)))


@pytest.mark.parametrize("pts", [np.full((5, 2), np.nan), [[1, 2], [3, "x"]], np.zeros((4, 4))])
def test_landmarks_raise_data_error(pts):
    with pytest.raises(DataError):
        landmark_box(pts)


def test_data_errors_are_still_value_errors():
    """Code written against the built-in type keeps catching them."""
    assert issubclass(DataError, ValueError) and issubclass(ModelError, FsanetError)
