"""`fsanet bundle` and `fsanet check` on tiny models: the kit's layout, its sha256 gate, the exit
codes, and a check that runs with numpy and ONNX Runtime alone and starts no subprocess."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
from fsanet.kit.wheel import source_tree

from fsanet import runtimes
from fsanet.files import sha256

FAST = ["--runs", "4", "--warmup", "1"]
WHEEL = "fsanet_edge-0.1.0-py3-none-any.whl"


def test_bundle_layout(tiny_models, tmp_path, cli, capsys):
    out = tmp_path / "kit"
    code, stdout, err = cli(capsys, "bundle", tiny_models["mean"], "--reference", tiny_models["mean"], "--count", "6",
                            "--seed", "3", "-o", out, "--tar")  # fmt: skip
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.txt", "SHA256SUMS", "budget.toml", "bundle.json", "fsanet_edge-0.1.0-py3-none-any.whl",
                     "golden.npz", "host-angles.npz", "mean.onnx", "requirements.txt"]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kit", "kit.tar.gz"]  # no temporary folder left
    m = json.loads((out / "bundle.json").read_text())
    assert m["format"] == "fsanet-bundle" and m["reference"] == "mean.onnx"
    assert m["files"] == {n: sha256(out / n) for n in names if n not in ("bundle.json", "SHA256SUMS")}
    sums = (out / "SHA256SUMS").read_text()  # `sha256sum` lines of every other file, sorted
    assert sums == "".join(f"{sha256(out / n)}  {n}\n" for n in names if n != "SHA256SUMS")
    assert f"SHA256SUMS sha256: {sha256(out / 'SHA256SUMS')}\n" in stdout  # the host's line, not in the kit
    assert not [p for p in out.iterdir() if sha256(out / "SHA256SUMS").encode() in p.read_bytes()]
    assert (out / "requirements.txt").read_text() == f"{WHEEL} --hash=sha256:{sha256(out / WHEEL)}\n"
    assert m["artifacts"] == [
        {"file": "mean.onnx", "backend": "onnxruntime", "precision": "unknown", "sidecar": None,
         "input_format": "nchw,bgr,raw", "host_angles": True, "host_note": None}
    ]  # fmt: skip
    assert m["golden"]["count"] == 6 and m["golden"]["source"] == "synthetic:6:3" and m["golden"]["labelled"]
    from fsanet.data import open_faces

    heads = open_faces("synthetic:6:3")
    with np.load(out / "golden.npz") as z:
        assert np.array_equal(z["crops"], heads.images()) and np.allclose(z["labels"], heads.poses)
        with runtimes.open(tiny_models["mean"]) as rt:
            assert np.array_equal(z["reference"], rt.predict(z["crops"]))
    source = source_tree()
    assert m["wheel"] == {"file": WHEEL, "version": "0.1.0", "source": f"built from {source}"}
    with zipfile.ZipFile(out / WHEEL) as z:  # this checkout's code, the default model, nothing else
        assert z.read("fsanet/kit/wheel.py") == (source / "kit" / "wheel.py").read_bytes()
        assert "fsanet/benchmarks/bench.py" in z.namelist() and "fsanet/kit/check.py" in z.namelist()
        assert "fsanet/models/fsanet-fusion-synthetic.pt" in z.namelist()
        assert {n.split("/")[0] for n in z.namelist()} == {"fsanet", "fsanet_edge-0.1.0.dist-info"}
    readme = (out / "README.txt").read_text()
    assert "(cd kit && pip install --no-deps --require-hashes -r requirements.txt)" in readme
    assert "  pip install 'onnxruntime==1.32.0'   # runs the .onnx files" in readme and "fsanet check kit" in readme
    assert "fsanet check kit --remote user@device" in readme
    assert "wrote" in stdout and "kit.tar.gz" in stdout
    import tarfile

    with tarfile.open(tmp_path / "kit.tar.gz") as t:
        assert sorted(t.getnames()) == [f"kit/{n}" for n in names]


def test_check_passes_and_writes_both_reports(tiny_kit, tmp_path, cli, capsys):
    code, out, err = cli(capsys, "check", tiny_kit, *FAST, "-o", tmp_path / "rep")
    assert code == 0, out + err
    r = json.loads((tmp_path / "rep" / "check.json").read_text())
    assert {"format", "bundle", "machine", "config", "artifacts", "skipped", "errors", "violations", "not_judged",
            "verdict", "recommended", "files"} <= set(r)  # fmt: skip
    a = r["artifacts"]["mean.onnx"]
    assert a["verdict"] == "PASS" and a["golden_source"] and a["drift"]["max"] == 0.0
    assert a["drift_to_host"]["max"] == 0.0 and a["latency"]["compute"]["1"]["runs"] == 4
    assert a["mae"]["mean"] > 0 and abs(a["mae_increase"]) < 1e-9  # labelled synthetic heads
    assert r["verdict"] == "PASS" and r["recommended"]["artifact"] == "mean.onnx"
    assert r["bundle"]["files_verified"] == 9 and r["machine"]["cpu"]
    assert r["not_judged"] == [] and r["budget"]["limits"] == {"all": {"max_drift": 0.25, "max_mae_increase": 0.2}}
    md = (tmp_path / "rep" / "check.md").read_text()
    assert "| mean.onnx (golden) | onnxruntime | unknown | PASS |" in md and "verdict: PASS" in md
    assert "Recommended for this device: **mean.onnx**" in md and "verdict: PASS" in out


def test_default_report_folder_is_inside_the_kit(tiny_kit, tmp_path, cli, capsys):
    kit = shutil.copytree(tiny_kit, tmp_path / "kit")
    code, out, _ = cli(capsys, "check", kit, "--no-latency")
    assert code == 0
    r = json.loads((kit / "check" / "check.json").read_text())
    assert "latency" not in r["artifacts"]["mean.onnx"] and r["recommended"] is None
    assert "Recommended for this device: none (latency not measured)" in out
    code, _, _ = cli(capsys, "check", kit, "--no-latency")  # its own reports do not break the kit
    assert code == 0


def test_limits_this_check_cannot_measure_are_listed_as_not_judged(
    tiny_models, noise_faces, fsanet_wheel, tmp_path, cli, capsys
):
    budget = tmp_path / "b.toml"
    budget.write_text(
        '[all]\nmax_drift = 0.1\nmax_p50_ms = 1000\n["other.onnx"]\nmax_drift = 0.1\n'
        '["mean.onnx"]\nmax_instructions_ratio = { "other.onnx" = 2 }\nmax_mae = 99\n'
    )
    kit = tmp_path / "kit"
    code, out, err = cli(capsys, "bundle", tiny_models["mean"], "--reference", tiny_models["mean"], "--faces",
                         noise_faces, "--budget", budget, "--wheel", fsanet_wheel, "-o", kit)  # fmt: skip
    assert code == 0, err
    assert "budget sections naming no artifact of the kit (not judged): ['other.onnx']" in out
    code, out, _ = cli(capsys, "check", kit, "--no-latency", "-o", tmp_path / "rep")
    assert code == 0, out
    r = json.loads((tmp_path / "rep" / "check.json").read_text())
    assert r["not_judged"] == [
        "[all] max_p50_ms: latency not measured (--no-latency)",
        "[other.onnx]: other.onnx is not in this kit",
        "[mean.onnx] max_instructions_ratio: instructions are counted by `fsanet bench --instructions`, not here",
        "[mean.onnx] max_mae: the golden set has no labels",
    ]
    assert r["budget"]["limits"] == {"all": {"max_drift": 0.1}}


@pytest.mark.parametrize("victim", ["golden.npz", "mean.onnx", "budget.toml"])
def test_a_changed_file_exits_2_naming_it(tiny_kit, tmp_path, cli, capsys, victim):
    kit = shutil.copytree(tiny_kit, tmp_path / "kit")
    data = bytearray((kit / victim).read_bytes())
    data[len(data) // 2] ^= 1
    (kit / victim).write_bytes(bytes(data))
    code, _, err = cli(capsys, "check", kit, *FAST, "-o", tmp_path / "rep")
    assert code == 2
    assert f"{kit / victim}: sha256" in err and "does not match bundle.json and SHA256SUMS" in err
    assert not (tmp_path / "rep").exists()


def test_a_missing_file_and_a_folder_that_is_no_kit_exit_2(tiny_kit, tmp_path, cli, capsys):
    kit = shutil.copytree(tiny_kit, tmp_path / "kit")
    (kit / "host-angles.npz").unlink()
    code, _, err = cli(capsys, "check", kit, *FAST)
    assert code == 2 and "host-angles.npz: missing from the bundle (SHA256SUMS lists it)" in err
    code, _, err = cli(capsys, "check", tmp_path, *FAST)
    assert code == 2 and "bundle.json: missing" in err


def test_a_model_with_nan_angles_exits_1(tiny_models, fsanet_wheel, tmp_path, cli, capsys):
    kit = tmp_path / "kit"
    code, _, err = cli(capsys, "bundle", tiny_models["nan"], "--reference", tiny_models["mean"], "--count", "4",
                       "--wheel", fsanet_wheel, "-o", kit)  # fmt: skip
    assert code == 0, err
    code, out, _ = cli(capsys, "check", kit, *FAST, "-o", tmp_path / "rep")
    assert code == 1
    assert "nan.onnx: the model produced non-finite angles on 4 of 4 faces" in out
    r = json.loads((tmp_path / "rep" / "check.json").read_text())
    assert r["artifacts"]["nan.onnx"]["verdict"] == "FAIL" and r["recommended"]["artifact"] == "mean.onnx"


def test_bundle_refuses_bad_input(tiny_models, fsanet_wheel, tmp_path, cli, capsys):
    code, _, err = cli(capsys, "bundle", tiny_models["mean"], "--wheel", fsanet_wheel, "-o", tmp_path / "a")
    assert code == 2 and "FP32 ONNX among the artifacts, found none" in err and "--reference" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    code, _, err = cli(
        capsys, "bundle", tiny_models["mean"], "--reference", tiny_models["mean"], "-o", tmp_path / "full"
    )
    assert code == 2 and "exists and is not empty" in err
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    code, _, err = cli(capsys, "bundle", engine, "-o", tmp_path / "b")
    assert code == 2 and "--build tensorrt-fp16" in err
    code, _, err = cli(capsys, "bundle", tiny_models["mean"], "--reference", tiny_models["mean"], "--budget",
                       tmp_path / "none.toml", "-o", tmp_path / "c")  # fmt: skip
    assert code == 2 and "none.toml: no such budget file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "m.engine"]


def test_bundle_refuses_a_wheel_that_is_not_this_fsanet_edge(tiny_models, fsanet_wheel, tmp_path, cli, capsys):
    def bundle(wheel):
        return cli(capsys, "bundle", tiny_models["mean"], "--reference", tiny_models["mean"], "--count", "2",
                   "--wheel", wheel, "-o", tmp_path / "kit")  # fmt: skip

    fake = tmp_path / WHEEL
    fake.write_text("not a zip")
    older = shutil.copyfile(fsanet_wheel, tmp_path / "fsanet_edge-0.0.9-py3-none-any.whl")
    native = shutil.copyfile(fsanet_wheel, tmp_path / "fsanet_edge-0.1.0-cp311-cp311-linux_x86_64.whl")
    other = shutil.copyfile(fsanet_wheel, tmp_path / "numpy-0.1.0-py3-none-any.whl")
    for wheel, why in [
        (tmp_path / "none.whl", "no such file"),
        (fake, "not a valid wheel"),
        (older, "fsanet-edge 0.0.9, but this fsanet-edge is 0.1.0"),
        (native, "tagged cp311-cp311-linux_x86_64; the kit needs the pure-Python py3-none-any wheel"),
        (other, f"not a wheel of fsanet-edge (its name must be {WHEEL})"),
    ]:
        code, _, err = bundle(wheel)
        assert code == 2 and f"--wheel {wheel}: {why}" in err
    assert not (tmp_path / "kit").exists()
    code, _, err = bundle(fsanet_wheel)
    assert code == 0, err
    assert sha256(tmp_path / "kit" / WHEEL) == sha256(fsanet_wheel)
    assert json.loads((tmp_path / "kit" / "bundle.json").read_text())["wheel"]["source"] == str(fsanet_wheel)


def test_build_without_tensorrt_names_the_extra(tiny_kit, cli, capsys):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    code, _, err = cli(capsys, "check", tiny_kit, "--build", "tensorrt-fp16", *FAST)
    assert code == 2 and "pip install 'fsanet-edge[tensorrt]'" in err
    code, _, err = cli(capsys, "check", tiny_kit, "--build", "tensorrt-fp8", *FAST)
    assert code == 2 and "--build 'tensorrt-fp8'" in err


def test_check_runs_on_a_runtime_only_install(tiny_kit, tmp_path, runtime_only):
    done = runtime_only("", "check", tiny_kit, *FAST, "-o", tmp_path / "rep")
    assert done.returncode == 0, done.stdout + done.stderr
    r = json.loads((tmp_path / "rep" / "check.json").read_text())
    assert r["verdict"] == "PASS" and r["plots"] == []  # no matplotlib: no plots, nothing else missing


def test_an_artifact_whose_runtime_is_missing_is_skipped_naming_the_extra(tiny_kit, tmp_path, runtime_only):
    done = runtime_only("onnxruntime", "check", tiny_kit, *FAST, "-o", tmp_path / "rep")
    assert done.returncode == 2  # nothing left to run
    assert "no artifact of the kit can run here" in done.stderr
    assert "install a runtime: pip install 'onnxruntime==1.32.0'" in done.stderr  # not fsanet-edge[...] from an index
