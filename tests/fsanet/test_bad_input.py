"""Bad input: a clear error naming the file, exit code 2, and nothing half-written."""

from __future__ import annotations

import numpy as np
import scipy.io

from fsanet.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_truncated_h5(fusion_h5, tmp_path, capsys):
    bad = tmp_path / "truncated.h5"
    bad.write_bytes(fusion_h5[0].read_bytes()[:4096])
    out = tmp_path / "m.pt"
    code, err = run(capsys, "import-keras", bad, "-o", out)
    assert code == 2 and "truncated.h5" in err
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_unrelated_h5(tmp_path, capsys):
    import h5py

    bad = tmp_path / "other.h5"
    with h5py.File(bad, "w") as f:
        f["x"] = np.zeros(3)
    code, err = run(capsys, "import-keras", bad, "-o", tmp_path / "m.pt")
    assert code == 2 and "other.h5" in err and "not a Keras weights file" in err


def test_one_bad_file_in_a_fusion_writes_nothing(fusion_h5, tmp_path, capsys):
    bad = tmp_path / "not-h5.h5"
    bad.write_text("hello")
    out = tmp_path / "fusion.pt"
    code, err = run(capsys, "import-keras", fusion_h5[0], bad, "-o", out)
    assert code == 2 and "not-h5.h5" in err
    assert not out.exists()


def test_mat_without_pose_para(fusion_checkpoint, tmp_path, capsys):
    scipy.io.savemat(tmp_path / "face.mat", {"pt2d": np.ones((2, 21))})
    np.save(tmp_path / "face.jpg", np.zeros(1))  # never reached
    code, err = run(capsys, "eval", fusion_checkpoint, "--data", tmp_path)
    assert code == 2 and "face.mat" in err and "Pose_Para" in err


def test_unreadable_image(fusion_checkpoint, tmp_path, capsys):
    scipy.io.savemat(tmp_path / "face.mat", {"Pose_Para": np.zeros((1, 7)), "pt2d": np.full((2, 21), 50.0)})
    (tmp_path / "face.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    code, err = run(capsys, "eval", fusion_checkpoint, "--data", tmp_path)
    assert code == 2 and "face.jpg" in err and "cannot read the image" in err


def test_empty_folder(fusion_checkpoint, tmp_path, capsys):
    code, err = run(capsys, "eval", fusion_checkpoint, "--data", tmp_path)
    assert code == 2 and str(tmp_path) in err and "no faces found" in err


def test_not_a_checkpoint(tmp_path, shared_data, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"junk")
    code, err = run(capsys, "eval", bad, "--data", shared_data / "aflw2000-sample")
    assert code == 2 and "model.pt" in err


def test_checkpoint_that_would_run_code_is_refused(tmp_path, shared_data, capsys):
    import collections

    import torch

    bad = tmp_path / "evil.pt"
    torch.save({"format": "fsanet-checkpoint", "x": collections.Counter(a=1), "f": np.float64}, bad)
    code, err = run(capsys, "eval", bad, "--data", shared_data / "aflw2000-sample")
    assert code == 2 and "evil.pt" in err
