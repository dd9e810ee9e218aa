"""`fsanet check` on a kit whose bundle.json or arrays are malformed or point outside the kit
(issue 28, classes 3, 6 and 7): exit 2 with one line naming the file and the field, before any
model is loaded. Each kit is resealed (bundle.json's `files` and SHA256SUMS rewritten, as a forger
who controls the whole kit would), so that the schema and the contents are what stop it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fsanet.limits import MAX_GOLDEN_FACES, MAX_NESTING

FAST = ["--runs", "2", "--warmup", "0", "--no-latency"]


@pytest.fixture
def kit(tiny_kit, tmp_path):
    return shutil.copytree(tiny_kit, tmp_path / "kit")


def edit_manifest(kit, change) -> None:
    m = json.loads((kit / "bundle.json").read_text())
    change(m)
    (kit / "bundle.json").write_text(json.dumps(m))


def refused(cli, capsys, kit, kit_helpers, *needles, files: bool = True) -> str:
    kit_helpers.reseal(kit, files)
    code, _, err = cli(capsys, "check", kit, *FAST, "-o", kit.parent / "rep")
    line = err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(line.splitlines()) == 1
    for n in needles:
        assert n in line, line
    assert not (kit.parent / "rep").exists()
    return line


def _artifact(field, value):
    return lambda m: m["artifacts"][0].__setitem__(field, value)


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (lambda m: m.__setitem__("artifacts", "x"), ["field 'artifacts' must be a list"]),
        (lambda m: m.__setitem__("golden", []), ["field 'golden' must be an object, got a list"]),
        (lambda m: m["artifacts"][0].pop("backend"), ["field 'artifacts[0].backend' is missing"]),
        (lambda m: m["golden"].__setitem__("count", 10**9), ["field 'golden.count' must be an integer 1..10000"]),
        (lambda m: m["golden"].__setitem__("reference_mae", {"mean": "x"}), ["'golden.reference_mae.mean'"]),
        (lambda m: m.__setitem__("reference", "other.onnx"), ["field 'reference' must name one of the artifacts"]),
        (_artifact("backend", "tensorrt"), ["field 'artifacts[0].backend' must be one of"]),
        (_artifact("backend", "tflite"), ["field 'artifacts[0].backend' must be 'onnxruntime' for a .onnx file"]),
    ],
)
def test_a_malformed_bundle_json_names_the_field(kit, change, needles, cli, capsys, kit_helpers):
    edit_manifest(kit, change)
    refused(cli, capsys, kit, kit_helpers, "bundle.json: field", *needles)


@pytest.mark.parametrize(
    ("files", "needle"),
    [
        ({"a/b": "0" * 64}, "field 'files['a/b']' must be a plain file name"),
        ({"mean.onnx": "x"}, "field 'files['mean.onnx']' must be a sha256 (64 hex digits)"),
        ([], "field 'files' must map 1 to 256 file names to their sha256, got a list"),
    ],
)
def test_a_malformed_files_map_names_the_entry(kit, files, needle, cli, capsys, kit_helpers):
    edit_manifest(kit, lambda m: m.__setitem__("files", files))
    refused(cli, capsys, kit, kit_helpers, needle, files=False)


@pytest.mark.parametrize("name", ["/etc/passwd.onnx", "../../x.onnx", "../kit2/mean.onnx", "sub/mean.onnx"])
def test_an_artifact_outside_the_kit_is_refused(kit, name, cli, capsys, kit_helpers):
    (kit.parent / "x.onnx").write_bytes((kit / "mean.onnx").read_bytes())  # a model that would run

    edit_manifest(kit, _artifact("file", name))
    refused(cli, capsys, kit, kit_helpers, "field 'artifacts[0].file' must be a plain file name inside the kit")


def test_an_artifact_the_files_list_lacks_is_refused(kit, cli, capsys, kit_helpers):
    kit_helpers.reseal(kit)
    m = json.loads((kit / "bundle.json").read_text())
    del m["files"]["mean.onnx"]
    (kit / "bundle.json").write_text(json.dumps(m))
    from fsanet.kit import layout

    from fsanet.files import sha256

    sums = {p.name: sha256(p) for p in kit.iterdir() if p.name != "SHA256SUMS"}
    (kit / "SHA256SUMS").write_text(layout.sums_text(sums))  # mean.onnx in SHA256SUMS only
    code, _, err = cli(capsys, "check", kit, *FAST)
    assert (
        code == 2 and "field 'files' lacks 'mean.onnx'" in err and "every file the kit uses carries its sha256" in err
    )


def test_an_unlisted_sidecar_or_model_file_is_refused(kit, cli, capsys, kit_helpers):
    line = kit_helpers.reseal(kit)
    (kit / "mean.onnx.json").write_text("{}")  # a runtime would read it as the model's manifest
    code, _, err = cli(capsys, "check", kit, *FAST)
    assert code == 2 and "mean.onnx.json: in the kit but not in SHA256SUMS" in err
    assert kit_helpers.reseal(kit) != line  # listed now: bundle.json must name it as the sidecar
    code, _, err = cli(capsys, "check", kit, *FAST)
    assert code == 2 and "field 'artifacts[0].sidecar' must be 'mean.onnx.json' when the kit holds that file" in err


def test_bundle_json_is_bounded_before_parsing(kit, cli, capsys, kit_helpers):
    (kit / "bundle.json").write_text("[" * 5000 + "]" * 5000)
    refused(cli, capsys, kit, kit_helpers, "bundle.json: nested 5000 deep", f"bound of {MAX_NESTING}")
    (kit / "bundle.json").write_text('{"a": "' + "[" * 5000 + '"}')  # brackets in a string do not nest
    refused(cli, capsys, kit, kit_helpers, "bundle.json: not an fsanet bundle manifest")
    with open(kit / "bundle.json", "wb") as f:
        f.truncate(17 << 20)
    refused(cli, capsys, kit, kit_helpers, "bundle.json: larger than the bound of 16,777,216 bytes")


def write_golden(kit, **arrays) -> None:
    with np.load(kit / "golden.npz") as z:
        golden = {k: z[k] for k in z.files}
    golden.update(arrays)
    for k in [k for k, v in golden.items() if v is None]:
        del golden[k]
    np.savez(kit / "golden.npz", **golden)


def huge_header(path, field: str, shape: tuple) -> None:
    """An .npz whose `field` header claims `shape` (float32) over a few bytes of data."""
    import zipfile

    from numpy.lib import format as npy

    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    import io

    b = io.BytesIO()
    npy.write_array_header_1_0(b, header)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{field}.npy", b.getvalue() + b"\0" * 64)


@pytest.mark.parametrize(
    ("arrays", "needles"),
    [
        ({"crops": np.array([object()] * 8, dtype=object)}, ["field 'crops' holds Python objects"]),
        ({"crops": np.zeros((8, 32, 32, 3), np.uint8)}, ["field 'crops' must be (N, 64, 64, 3) uint8"]),
        ({"crops": np.zeros((8, 64, 64, 3), np.float32)}, ["field 'crops' must be (N, 64, 64, 3) uint8"]),
        ({"crops": np.zeros((3, 64, 64, 3), np.uint8)}, ["golden.count = 8", "got 3"]),
        ({"reference": np.zeros((8, 2), np.float32)}, ["field 'reference' must be (8, 3) float angles"]),
        ({"reference": np.full((8, 3), np.nan, np.float32)}, ["field 'reference' holds NaN"]),
        ({"labels": np.zeros((7, 3), np.float32)}, ["field 'labels' must be (8, 3)"]),
        ({"names": np.arange(8)}, ["field 'names' must be (8,) names"]),
        ({"names": None}, ["field 'names' is missing"]),
    ],
)
def test_a_bad_golden_npz_names_the_file_and_field(kit, arrays, needles, cli, capsys, kit_helpers):
    write_golden(kit, **arrays)
    refused(cli, capsys, kit, kit_helpers, f"{kit / 'golden.npz'}: ", *needles)


def test_a_golden_header_claiming_a_billion_faces_is_refused_before_allocating(kit, cli, capsys, kit_helpers):
    huge_header(kit / "golden.npz", "crops", (10**9, 64, 64, 3))
    refused(cli, capsys, kit, kit_helpers, "golden.npz: field 'crops' declares shape (1000000000, 64, 64, 3)")


def test_bad_host_angles_name_the_file_and_field(kit, cli, capsys, kit_helpers):
    np.savez(kit / "host-angles.npz", **{"mean.onnx": np.zeros((8, 2), np.float32)})
    refused(cli, capsys, kit, kit_helpers, "host-angles.npz: field 'mean.onnx' must be (8, 3) float angles")
    np.savez(kit / "host-angles.npz", **{"other.onnx": np.zeros((8, 3), np.float32)})
    refused(cli, capsys, kit, kit_helpers, "host-angles.npz: field 'other.onnx' names no artifact of the kit")
    huge_header(kit / "host-angles.npz", "mean.onnx", (10**9, 3))
    refused(cli, capsys, kit, kit_helpers, "host-angles.npz: field 'mean.onnx' declares shape (1000000000, 3)")


def test_bundle_count_has_a_documented_bound(tiny_models, tmp_path, cli, capsys):
    code, _, err = cli(
        capsys, "bundle", tiny_models["mean"], "--count", str(MAX_GOLDEN_FACES + 1), "-o", tmp_path / "k"
    )
    assert code == 2 and f"argument --count: must be an integer from 1 to {MAX_GOLDEN_FACES:,}" in err
    from fsanet.kit.bundle import make_bundle

    from fsanet.errors import DataError

    with pytest.raises(DataError, match="bundle --count .*MAX_GOLDEN_FACES.*: must be an integer from 1 to 10,000"):
        make_bundle([tiny_models["mean"]], tmp_path / "k", count=10**9)
    assert not (tmp_path / "k").exists()


def test_a_kit_of_the_previous_format_is_refused_by_version(kit, cli, capsys, kit_helpers):
    edit_manifest(kit, lambda m: m.__setitem__("version", 1))
    refused(cli, capsys, kit, kit_helpers, "bundle version 1; this fsanet reads version 2")
