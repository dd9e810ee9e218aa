"""Training on real data: resume equals an uninterrupted run, logs and checkpoints, bad input."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from fsanet.train import TrainConfig, train

from fsanet import checkpoint
from fsanet.errors import DataError


@pytest.fixture(scope="module")
def aflw(shared_data):
    return str(shared_data / "aflw2000-sample")


def quick(aflw: str, out, **kw) -> TrainConfig:
    base = dict(data=aflw, val=(aflw,), output=str(out), epochs=2, batch=4, limit=8, workers=0, milestones=(1,))
    return TrainConfig(**(base | kw))


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(aflw, tmp_path):
    whole = train(quick(aflw, tmp_path / "whole"))

    def interrupt(epoch, _row):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(quick(aflw, tmp_path / "split"), on_epoch_end=interrupt)
    assert len(list(csv.DictReader(open(tmp_path / "split" / "log.csv")))) == 1
    resumed = train(quick(aflw, tmp_path / "split", resume=True))

    assert [h["step_losses"] for h in resumed["history"]] == [h["step_losses"] for h in whole["history"]]
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)["state_dict"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the lr schedule continued too (x0.1 after epoch 1)
    assert [h["lr"] for h in resumed["history"]] == pytest.approx([1e-3, 1e-4])


def test_run_folder_holds_loadable_checkpoints_and_logs(aflw, tmp_path):
    out = tmp_path / "run"
    result = train(quick(aflw, out, epochs=1))
    model = checkpoint.load(out / "best.pt")
    payload = checkpoint.load_payload(out / "last.pt")
    assert payload["kind"] == "model" and payload["sources"][0]["variant"] == "fsanet-1x1-capsule"
    assert payload["sources"][0]["epoch"] == 1
    assert isinstance(model, torch.nn.Module)
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert float(rows[0]["aflw2000-sample_mean"]) == pytest.approx(result["best"]["mae"])
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "tensorboard").iterdir())
    assert "16 faces" in (out / "data.json").read_text()
    with pytest.raises(DataError, match="--resume"):
        train(quick(aflw, out, epochs=1))


def test_resume_refuses_a_changed_recipe(aflw, tmp_path):
    train(quick(aflw, tmp_path, epochs=1))
    with pytest.raises(DataError, match="lr"):
        train(quick(aflw, tmp_path, epochs=1, lr=0.5, resume=True))


def test_bad_training_data_is_refused_with_counts(aflw, shared_data, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no faces found"):
        train(quick(str(empty), tmp_path / "a"))
    with pytest.raises(DataError, match="no pose labels"):
        train(quick(str(shared_data / "real-faces"), tmp_path / "b"))
    with pytest.raises(DataError, match="fewer faces than one batch"):
        train(quick(aflw, tmp_path / "c", batch=32, limit=None))
    with pytest.raises(DataError, match="subject"):
        train(TrainConfig(data=aflw, output=str(tmp_path / "d"), protocol=2, workers=0))
    with pytest.raises(DataError, match="--val"):
        train(TrainConfig(data=aflw, output=str(tmp_path / "e"), workers=0))


def test_augmentation_jitters_the_official_crop_reproducibly(aflw):
    from fsanet.train.augment import TrainFaces, warp_crop
    from fsanet.train.data import open_set

    faces = open_set(aflw)
    ds = TrainFaces(faces, seed=3, augment=True)
    x0, y0 = ds[0]
    assert x0.shape == (3, 64, 64) and x0.dtype == torch.float32 and torch.equal(y0, torch.from_numpy(faces.poses[0]))
    assert torch.equal(ds[0][0], x0)  # same (seed, epoch, index): same crop
    ds.epoch = 1
    assert not torch.equal(ds[0][0], x0)  # another epoch: another crop
    crop = faces.load(0)
    assert np.array_equal(warp_crop(crop, 1.0, 0.0, 0.0), crop)  # no jitter: the official crop


def test_protocol2_split_is_by_subject_seeded_and_disjoint():
    from fsanet.train.data import by_subjects, subject_split

    from fsanet.data import FaceSet

    names = [f"{s:02d}/frame_{i:05d}_rgb.png" for s in range(1, 25) for i in range(3)]
    faces = FaceSet("biwi", names, lambda i: np.zeros((64, 64, 3), np.uint8), np.zeros((len(names), 3), np.float32))
    split = subject_split(faces, seed=7)
    assert split == subject_split(faces, seed=7) and split != subject_split(faces, seed=8)
    assert len(split["train"]) == 17 and len(split["test"]) == 7  # 70/30 of 24 subjects
    assert not set(split["train"]) & set(split["test"])
    test = by_subjects(faces, split["test"], "test")
    assert len(test) == 21 and {n.split("/")[0] for n in test.names} == set(split["test"])
