"""`fsanet predict` and `fsanet demo` use one detector module, so they find the same faces."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from fsanet.cli import main


@pytest.fixture(scope="module")
def photos(shared_data, tmp_path_factory):
    """Real photos without their .pts, so that both commands must detect the faces."""
    d = tmp_path_factory.mktemp("photos")
    for jpg in sorted((shared_data / "real-faces" / "helen-trainset").glob("*.jpg"))[:12]:
        shutil.copy(jpg, d / jpg.name)
    return d


def test_predict_and_demo_find_the_same_faces(photos, tiny_models, tmp_path, capsys):
    # the tiny model's "angles" are the crop's channel means: equal angles mean equal crops
    assert main(["predict", tiny_models["mean"], str(photos), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    predicted = {}
    for r in rows:
        predicted.setdefault(r["image"].rsplit("/", 1)[-1], []).append(r["angles"])

    assert main(["demo", str(photos), "-m", tiny_models["mean"], "-o", str(tmp_path / "drawn") + "/"]) == 0
    shown = {}
    for line in capsys.readouterr().out.splitlines():
        name, sep, rest = line.partition(": ")
        if sep and name.endswith(".jpg"):  # "PHOTO: yaw ..." or "PHOTO: no face"
            found = re.findall(r"yaw\s+([-+]\d+\.\d+)\s+pitch\s+([-+]\d+\.\d+)\s+roll\s+([-+]\d+\.\d+)", rest)
            shown[name.rsplit("/", 1)[-1]] = [[float(v) for v in f] for f in found]

    assert set(shown) == set(predicted) and len(shown) == 12
    faces = 0
    for name, angles in predicted.items():
        if angles == [None]:
            assert shown[name] == [], name
            continue
        assert len(shown[name]) == len(angles), name
        for a, b in zip(angles, shown[name], strict=True):
            assert [round(v, 2) for v in a] == pytest.approx(b, abs=0.011), name
        faces += len(angles)
    assert faces >= 6  # the detector found faces on most photos: the comparison says something
