"""The packaged model: the authors' 300W-LP fusion as `make packaged-model` converts it, the
default of every command and of `fsanet.load()`, giving the `.h5` files' angles on real faces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fsanet.cli import main
from fsanet.files import sha256
from fsanet.packaged import DEFAULT, MODELS_DIR, PACKAGED, default_model

TOLERANCE = 1e-3  # degrees
REAL_FACE = "helen-trainset/100032540_1"  # a real photograph with its 68 landmarks
PHOTO = "afw/1051618982_1"  # a frontal face the detector finds


@pytest.fixture(scope="module")
def h5_fusion(fusion_h5):
    """The authors' fusion read straight from their three .h5 files (no checkpoint between)."""
    from fsanet import model as M
    from fsanet.keras_weights import load_keras

    return M.Fusion([load_keras(f) for f in fusion_h5]).eval()


def h5_angles(h5_fusion, crops: np.ndarray) -> np.ndarray:
    from fsanet.evaluate import predict_torch

    return predict_torch(h5_fusion, crops)


def test_the_package_ships_the_authors_fusion_with_licence_and_notice_under_10_mb():
    sizes = [p.stat().st_size for p in MODELS_DIR.glob("*.pt")]
    assert len(sizes) == 2 and sum(sizes) < 10e6, sizes
    notice = (MODELS_DIR / "NOTICE").read_text()
    for fact in ("https://github.com/shamangary/FSA-Net", "Apache License", "fsanet_capsule_3_16_2_21_5",
                 "fsanet_var_capsule_3_16_2_21_5", "fsanet_noS_capsule_3_16_2_192_5", "converted"):  # fmt: skip
        assert fact in notice, fact
    assert "Apache License" in (MODELS_DIR / "LICENSE-FSA-Net").read_text()
    manifest = json.loads((MODELS_DIR / "fsanet-fusion-300wlp.pt.json").read_text())
    assert manifest["sha256"] == sha256(default_model()) and manifest["precision"] == "fp32"
    assert manifest["members"] == ["fsanet-1x1-capsule", "fsanet-var-capsule", "fsanet-wo-capsule"]
    assert default_model() == PACKAGED[DEFAULT].path == MODELS_DIR / "fsanet-fusion-300wlp.pt"


def test_a_damaged_packaged_model_is_refused(tmp_path, monkeypatch):
    """A file that no longer matches its manifest's sha256: exit 2 naming the file and the fix."""
    import shutil

    import fsanet.packaged as packaged

    for f in ("fsanet-fusion-300wlp.pt", "fsanet-fusion-300wlp.pt.json"):
        shutil.copyfile(MODELS_DIR / f, tmp_path / f)
    with open(tmp_path / "fsanet-fusion-300wlp.pt", "r+b") as f:
        f.seek(-100, 2)
        f.write(b"\0" * 8)
    monkeypatch.setattr(packaged, "MODELS_DIR", tmp_path)
    with pytest.raises(packaged.DataError, match="make packaged-model"):
        packaged.default_model()


def test_make_packaged_model_rebuilds_the_exact_file(fusion_h5, fusion_checkpoint):
    """The importer on the authors' three .h5 files (the session's fixture) writes the same bytes,
    and the manifest records those files' sha256."""
    assert sha256(fusion_checkpoint) == sha256(default_model())
    sources = json.loads((MODELS_DIR / "fsanet-fusion-300wlp.pt.json").read_text())["source"]["files"]
    assert [s["sha256"] for s in sources] == [sha256(f) for f in fusion_h5]


def test_packaged_angles_equal_the_h5_files_on_real_faces(h5_fusion, real_faces):
    import fsanet

    faces = real_faces[::8]  # 151 faces, spread over AFW and HELEN
    with fsanet.load(threads=2) as est:  # no model given: the packaged fusion
        got = est.predict(faces)
    assert np.abs(got - h5_angles(h5_fusion, faces)).max() <= TOLERANCE


def test_predict_and_demo_without_a_model_give_the_authors_angles(h5_fusion, shared_data, tmp_path, capsys):
    from fsanet.predict import faces_in

    image = shared_data / "real-faces" / f"{REAL_FACE}.jpg"
    assert main(["predict", str(image), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    crops, how = faces_in(Path(image))
    assert how == "landmarks"
    assert np.abs(np.array(row["angles"]) - h5_angles(h5_fusion, np.stack(crops))[0]).max() <= TOLERANCE

    photo = shared_data / "real-faces" / f"{PHOTO}.jpg"
    out = tmp_path / "drawn.jpg"
    assert main(["demo", str(photo), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and f"wrote {out}" in printed
    from fsanet.data.base import read_image
    from fsanet.detectors import open_detector
    from fsanet.preprocess import crop_box, expand_box

    frame = read_image(photo)
    boxes = open_detector("haar")(frame)
    expected = h5_angles(h5_fusion, np.stack([crop_box(frame, expand_box(b, frame.shape)) for b in boxes]))
    line = next(line for line in printed.splitlines() if line.startswith(str(photo)))
    shown = np.array([float(w) for w in line.split(": ", 1)[1].replace(";", " ").split() if w[0] in "+-"])
    assert np.abs(shown - expected.ravel()).max() <= 0.005 + TOLERANCE  # printed to 2 decimals


def test_eval_without_a_model_scores_the_packaged_fusion(shared_data, capsys):
    assert main(["eval", "--data", str(shared_data / "aflw2000-sample")]) == 0
    printed = capsys.readouterr().out
    assert str(default_model()) in printed and "3.98" in printed  # the authors' graphs' 3.98 (README)


def test_a_model_given_twice_is_refused(capsys):
    assert main(["eval", "a.onnx", "-m", "b.onnx", "--data", "synthetic:4"]) == 2
    assert "two models given" in capsys.readouterr().err
