"""`-o` equal to an input is refused before any work, and so are outputs that cannot be written
and budgets that name no artifact: no late failure after minutes of work."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from fsanet.cli import main

PACKAGED = Path(__file__).resolve().parents[2] / "fsanet" / "models" / "fsanet-fusion-synthetic.pt"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_import_keras_onto_its_input(fusion_h5, tmp_path, capsys):
    h5 = tmp_path / "cap.h5"
    shutil.copy(fusion_h5[0], h5)
    before = digest(h5)
    code, err = run(capsys, "import-keras", h5, "-o", h5)
    assert code == 2 and "-o" in err and "is also an input" in err
    assert digest(h5) == before


def test_fuse_onto_a_member(tmp_path, capsys):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    shutil.copy(PACKAGED, a)
    shutil.copy(PACKAGED, b)
    before = digest(a)
    code, err = run(capsys, "fuse", a, b, "-o", a)
    assert code == 2 and "is also an input" in err
    assert digest(a) == before


def test_calib_build_onto_its_source(make_npz, tmp_path, capsys):
    ds = make_npz(tmp_path / "ds.npz")
    before = digest(ds)
    code, err = run(capsys, "calib", "build", ds, "-n", "2", "-o", ds)
    assert code == 2 and "is also an input" in err
    assert digest(ds) == before


def test_same_file_by_another_path_is_refused(make_npz, tmp_path, capsys):
    ds = make_npz(tmp_path / "ds.npz")
    (tmp_path / "link.npz").symlink_to(ds)
    code, err = run(capsys, "calib", "build", ds, "-n", "2", "-o", tmp_path / "link.npz")
    assert code == 2 and "is also an input" in err


@pytest.mark.parametrize("where", ["input", "unwritable"])
def test_export_refuses_its_output_before_loading_anything(where, tmp_path, capsys):
    """The checkpoint here is junk: an error about -o proves the output was checked before
    the model was even read (the old code failed after about 60 s of export work)."""
    junk = tmp_path / "model.pt"
    junk.write_bytes(b"not a checkpoint")
    out = junk if where == "input" else Path("/proc/fsanet-test/out")
    code, err = run(capsys, "export", junk, "--to", "onnx", "-o", out)
    assert code == 2 and f"-o {out}" in err
    assert "not a readable" not in err


def test_budget_sections_checked_before_the_benchmark(tiny_models, tmp_path, capsys):
    """--faces names a folder that does not exist: the budget error must come first."""
    code, err = run(capsys, "bench", tiny_models["mean"], "--faces", tmp_path / "absent", "--budget", "ports",
                    "-o", tmp_path / "rep")  # fmt: skip
    assert code == 2 and "fsanet-fusion-300wlp.onnx" in err and "name no artifact of this run" in err
    assert not (tmp_path / "rep").exists()


def test_pipeline_output_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "report"
    f.write_text("x")
    code, err = run(capsys, "pipeline", "-o", f)
    assert code == 2 and "is a file" in err


def test_pipeline_budget_sections_checked_before_any_work(tmp_path, capsys):
    budget = tmp_path / "typo.toml"
    budget.write_text('["fsanet-fusion-synthetic-int9.onnx"]\nmax_drift = 0.2\n')
    code, err = run(capsys, "pipeline", "--budget", budget, "-o", tmp_path / "run")
    assert code == 2 and "fsanet-fusion-synthetic-int9.onnx" in err and "name no artifact" in err
    assert not (tmp_path / "run").exists()  # refused before the output folder, the export or the bench


def test_artifact_names_are_the_files_export_writes():
    from fsanet.export.targets import TARGETS, artifact_name

    names = [artifact_name("m", t) for t in TARGETS]
    assert names[:3] == ["m.onnx", "m-fp16.onnx", "m-int8.onnx"] and "m-dynamic.tflite" in names
    assert "m-int8.engine" in names and len(set(names)) == len(TARGETS)
