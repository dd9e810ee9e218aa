"""TFLite FP32 of the authors' fusion: the same angles as the float ONNX, through LiteRT."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fsanet.benchmarks.accuracy import drift

from fsanet import runtimes


@pytest.fixture(scope="module")
def fusion_tflite(fusion_checkpoint, real_faces, tmp_path_factory):
    from fsanet.export.tflite import export_tflite

    out = tmp_path_factory.mktemp("tflite") / "fusion.tflite"
    export_tflite(fusion_checkpoint, out, real_faces[::4], "real faces")
    return out


def test_tflite_float_matches_the_float_onnx_on_real_faces(fusion_tflite, fusion_onnx, real_faces):
    with runtimes.open(fusion_tflite, threads=1) as tfl, runtimes.open(fusion_onnx) as ref:
        assert tfl.backend == "tflite" and tfl.fixed_batch == 1  # batches run face by face
        d = drift(tfl.predict(real_faces), ref.predict(real_faces))
    assert d["max"] <= 0.01


def test_tflite_eval_gives_the_authors_numbers(fusion_tflite, shared_data, tmp_path):
    from fsanet.cli import main

    out = tmp_path / "eval.json"
    assert main(["eval", str(fusion_tflite), "--data", str(shared_data / "aflw2000-sample"), "--json", str(out)]) == 0
    assert abs(json.loads(out.read_text())["mae"]["mean"] - 3.98) <= 0.01


def test_tflite_runs_without_torch_or_tensorflow(fusion_tflite, real_faces, tmp_path):
    import subprocess
    import sys

    np.save(tmp_path / "crops.npy", real_faces[:3])
    code = (
        "import sys, numpy as np; from fsanet import runtimes; "
        f"rt = runtimes.open({str(fusion_tflite)!r}); a = rt.predict(np.load({str(tmp_path / 'crops.npy')!r})); "
        "assert a.shape == (3, 3); heavy = {'torch', 'tensorflow'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_changed_tflite_file_is_refused(fusion_tflite, tmp_path):
    import shutil

    from fsanet.errors import DataError

    bad = tmp_path / "fusion.tflite"
    shutil.copy(fusion_tflite, bad)
    shutil.copy(f"{fusion_tflite}.json", f"{bad}.json")
    with open(bad, "ab") as f:
        f.write(b"\0")
    with pytest.raises(DataError, match="does not match its manifest"):
        runtimes.open(bad)
