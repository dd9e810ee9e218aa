from __future__ import annotations

import numpy as np
import pytest

from fsanet import calib
from fsanet.cli import main
from fsanet.errors import DataError


def test_deterministic_for_a_seed_and_different_across_seeds(shared_data, tmp_path):
    a = calib.build(shared_data / "real-faces" / "afw", 64, seed=3)
    b = calib.build(shared_data / "real-faces" / "afw", 64, seed=3)
    c = calib.build(shared_data / "real-faces" / "afw", 64, seed=4)
    assert a.sha256 == b.sha256 != c.sha256
    assert a.crops.shape == (64, 64, 64, 3) and a.crops.dtype == np.uint8
    path = a.save(tmp_path / "calib.npz")
    loaded = calib.load(path)
    assert loaded.sha256 == a.sha256 and loaded.manifest["count"] == 64 and loaded.manifest["seed"] == 3


def test_labelled_sets_are_stratified_over_yaw(shared_data):
    faces_dir = shared_data / "aflw2000-sample"
    cs = calib.build(faces_dir, 6, seed=0, bins=3)
    yaw = cs.poses[:, 0]
    # round-robin over the bins [-99,-33), [-33,33), [33,99]: both profiles get in, not only frontal faces
    assert (yaw < -33).sum() >= 1 and (yaw > 33).sum() >= 1 and (np.abs(yaw) <= 33).sum() >= 1
    assert "stratified" in cs.manifest["sampling"]


def test_batches_in_each_backend_layout(shared_data):
    from fsanet.runtimes import InputFormat

    cs = calib.build(shared_data / "real-faces" / "afw", 10)
    nchw = list(cs.batches(batch_size=4))
    assert [b.shape for b in nchw] == [(4, 3, 64, 64), (4, 3, 64, 64), (2, 3, 64, 64)]
    nhwc = next(cs.batches(InputFormat.parse("nhwc,rgb,mean=127.5,std=128"), batch_size=2))
    assert nhwc.shape == (2, 64, 64, 3) and nhwc.dtype == np.float32 and np.abs(nhwc).max() <= 1.0
    np.testing.assert_allclose(nhwc[0, ..., 0], (cs.crops[0, ..., 2] - 127.5) / 128)


def test_plain_photos_go_through_the_face_detector(shared_data, tmp_path):
    import shutil

    for p in sorted((shared_data / "real-faces" / "afw").glob("*.jpg"))[:40]:
        shutil.copy(p, tmp_path / p.name)  # photos without their .pts
    cs = calib.build(tmp_path, 10)
    assert len(cs) == 10 and "detector" in cs.manifest["crop"]


def test_too_few_faces_says_how_many_and_why(shared_data, tmp_path, capsys):
    import cv2

    (tmp_path / "a").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "a" / f"blank{i}.png"), np.full((120, 120, 3), 200, np.uint8))
    with pytest.raises(DataError, match=r"found 0 usable faces, 2 requested; dropped: 3 no face detected"):
        calib.build(tmp_path / "a", 2)
    code = main(["calib", "build", str(shared_data / "aflw2000-sample"), "-n", "20", "-o", str(tmp_path / "c.npz")])
    assert code == 2 and "found 16 usable faces, 20 requested" in capsys.readouterr().err
    assert not (tmp_path / "c.npz").exists()


def test_a_tampered_set_is_refused(shared_data, tmp_path):
    cs = calib.build(shared_data / "real-faces" / "afw", 8)
    cs.crops[0, 0, 0] += 1
    path = cs.save(tmp_path / "calib.npz")
    with pytest.raises(DataError, match="do not match the sha256"):
        calib.load(path)
