"""INT8 ONNX of the authors' fusion, calibrated on AFW, judged on HELEN and AFLW2000."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fsanet.export.quantize import quantize_onnx, quantize_with_budget

from fsanet import calib
from fsanet.data import open_faces
from fsanet.errors import DataError
from fsanet.manifest import read_sidecar


@pytest.fixture(scope="module")
def calib_afw(shared_data):
    return calib.build(shared_data / "real-faces" / "afw", 128, seed=0)


@pytest.fixture(scope="module")
def helen(shared_data):
    return open_faces(shared_data / "real-faces" / "helen-trainset").images()[::3]


@pytest.fixture(scope="module")
def int8_onnx(fusion_onnx, calib_afw, helen, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "fusion-int8.onnx"
    quantize_onnx(fusion_onnx, calib_afw, out, verify=helen, verify_name="helen")
    return out


def test_int8_holds_the_drift_and_size_limits(int8_onnx, fusion_onnx, calib_afw):
    m = read_sidecar(int8_onnx)
    assert m["precision"] == "int8" and m["calibration"]["sha256"] == calib_afw.sha256
    assert m["verification"]["drift_mean_deg"] <= 0.25
    assert int8_onnx.stat().st_size <= 0.6 * fusion_onnx.stat().st_size
    q = m["quantization"]
    assert q["quantize_nodes"] > 0 and q["weight_only_int8_values"] > 800_000  # dense + capsule weights
    assert q["image_convolution_split_into_streams"] == 6  # per-stream activation scales
    import onnx

    softmax = sum(n.op_type == "Softmax" for n in onnx.load(str(fusion_onnx)).graph.node)
    assert softmax > 0 and q["float_nodes"]["Softmax"] == softmax  # routing stays float


def test_int8_onnx_is_what_tensorrt_takes_as_explicitly_quantized(int8_onnx):
    import onnx
    from fsanet.export import trt_onnx

    facts = trt_onnx.inspect_model(onnx.load(str(int8_onnx)), int8_onnx, "10.3.0.30")
    assert facts.precision == "int8" and facts.problems == []  # signed symmetric Q/DQ only
    assert read_sidecar(int8_onnx)["quantization"]["activation_quantizers_signed"] > 0


def test_int8_mae_stays_within_0_2_of_float(int8_onnx, fusion_onnx, shared_data, tmp_path):
    from fsanet.cli import main

    maes = []
    for model in (fusion_onnx, int8_onnx):
        out = tmp_path / f"{model.stem}.json"
        assert main(["eval", str(model), "--data", str(shared_data / "aflw2000-sample"), "--json", str(out)]) == 0
        maes.append(json.loads(out.read_text())["mae"]["mean"])
    assert maes[1] - maes[0] <= 0.2


def test_accuracy_controlled_search_records_its_trials(fusion_onnx, calib_afw, helen, tmp_path):
    m = quantize_with_budget(fusion_onnx, calib_afw, tmp_path / "s.onnx", 3.0, helen[:100], "helen 100")
    search = m["quantization"]["search"]
    assert search["max_drift_deg"] == 3.0 and search["trajectory"]
    assert search["trajectory"][-1]["drift_mean_deg"] <= 3.0
    assert m["verification"]["drift_mean_deg"] <= 3.0


def test_default_budget_passes_good_int8_and_fails_a_badly_calibrated_one(
    int8_onnx, fusion_onnx, helen, shared_data, tmp_path, capsys
):
    from fsanet.cli import main

    # calibrated on near-black noise: the activation ranges are far too small for real faces
    # (uniform noise over 0..255 is not enough to break it: the trunk-only INT8 drifts 0.21 degrees)
    rng = np.random.default_rng(0)
    manifest = {"format": "fsanet-calibration", "source": "dark noise", "count": 64, "sha256": "dark"}
    dark = calib.CalibrationSet(rng.integers(0, 8, (64, 64, 64, 3), dtype=np.uint8), manifest)
    broken = tmp_path / "fusion-int8-dark.onnx"
    quantize_onnx(fusion_onnx, dark, broken, verify=helen[:64], verify_name="helen")
    common = [
        "--data",
        str(shared_data / "aflw2000-sample"),
        "--faces",
        str(shared_data / "real-faces" / "afw"),
        "--reference",
        str(fusion_onnx),
        "--budget",
        "default",
        "--batch",
        "1",
        "--runs",
        "10",
        "--warmup",
        "2",
        "--no-memory",
    ]
    assert main(["bench", str(int8_onnx), *common, "-o", str(tmp_path / "good")]) == 0
    assert main(["bench", str(int8_onnx), str(broken), *common, "-o", str(tmp_path / "bad")]) == 1
    out = capsys.readouterr().out
    assert "fusion-int8-dark.onnx: drift.mean = " in out and "limit 0.25" in out


def test_fp16_onnx_is_half_the_size_and_drifts_by_hundredths(fusion_onnx, helen, tmp_path):
    from fsanet.export.fp16 import to_fp16

    out = tmp_path / "fusion-fp16.onnx"
    m = to_fp16(fusion_onnx, out, helen, "helen")
    assert m["precision"] == "fp16" and m["input"]["dtype"] == "float32"  # same crops as every target
    assert m["verification"]["drift_mean_deg"] < 0.02 and m["verification"]["drift_max_deg"] < 0.5
    assert 0.45 < out.stat().st_size / fusion_onnx.stat().st_size < 0.55
    assert read_sidecar(out)["float_source"]["sha256"] == read_sidecar(fusion_onnx)["sha256"]


def test_export_command_builds_every_onnx_target_with_a_summary(fusion_checkpoint, calib_afw, tmp_path, capsys):
    from fsanet.cli import main

    cal = calib_afw.save(tmp_path / "calib.npz")
    code = main(
        [
            "export",
            str(fusion_checkpoint),
            "--to",
            "onnx,onnx-fp16,onnx-int8",
            "--calib",
            str(cal),
            "-o",
            str(tmp_path / "out"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    for target in ("| onnx |", "| onnx-fp16 |", "| onnx-int8 |"):
        assert target in out
    assert sorted(p.name for p in (tmp_path / "out").glob("*.onnx")) == [
        "fusion-fp16.onnx",
        "fusion-int8.onnx",
        "fusion.onnx",
    ]
    assert main(["export", str(fusion_checkpoint), "--to", "onnx,tflite-int4", "-o", str(tmp_path / "x")]) == 2
    assert "tflite-int4" in capsys.readouterr().err and not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def debug_run(int8_onnx, fusion_onnx, shared_data, tmp_path_factory):
    """`fsanet debug` of the INT8 file on 12 HELEN faces, with a recipe search for 0.12 degree."""
    from fsanet.cli import main

    out = tmp_path_factory.mktemp("debug") / "report"
    faces_dir = shared_data / "real-faces" / "helen-trainset"
    argv = ["debug", str(int8_onnx), "--reference", str(fusion_onnx), "--faces", str(faces_dir), "-n", "12"]
    assert main([*argv, "--max-drift", "0.12", "-o", str(out)]) == 0
    return json.loads((out / "debug.json").read_text()), out, open_faces(faces_dir).images()[:12], faces_dir


def test_debug_finds_where_int8_loses_the_angles(debug_run, int8_onnx, fusion_onnx, tmp_path, capsys):
    """`fsanet debug`: the total drift is the runtimes' own; every quantized layer gets a drift
    of its own; and the layer-alone graphs are right: inserting every layer's quantizers into the
    float graph, one layer at a time, gives back the INT8 file's angles."""
    import onnx
    from fsanet.benchmarks.layer_drift import alone, angles, load_pair, quantized_layers

    from fsanet import runtimes
    from fsanet.cli import main

    r, out, faces, faces_dir = debug_run
    with runtimes.open(int8_onnx) as q, runtimes.open(fusion_onnx) as f:
        direct = np.abs(q.predict(faces) - f.predict(faces))
    assert r["drift"]["mean"] == pytest.approx(direct.mean(), abs=1e-4) and r["faces"] == 12
    int8, ref = load_pair(int8_onnx, fusion_onnx)
    layers = quantized_layers(int8)
    alone_rows = [row for row in r["layers"] if row.get("alone_drift")]
    assert len(alone_rows) == len(layers) > 50 and r["unmatched_layers"] == []
    assert all(row["alone_drift"]["mean"] > 0 for row in alone_rows)  # each quantizer moves the angles
    assert r["top_contributors"][0]["mean"] == max(row["alone_drift"]["mean"] for row in alone_rows)
    assert r["layers"][0]["tensor"] == ref.graph.node[0].output[0] or r["layers"][0]["node"] == ref.graph.node[0].name
    assert 10 < r["layers"][0]["snr_db"] < 80 and r["first_jump"] in {row["node"] for row in r["layers"]}
    text = (out / "debug.md").read_text()
    assert "| # | node | op |" in text and "error jumps first at:" in text
    assert (out / "debug.png").read_bytes()[:4] == b"\x89PNG"
    every = ref
    for layer in layers:
        every = alone(int8, every, layer)
    onnx.checker.check_model(every)
    x = runtimes.open(int8_onnx).input_format.prepare(faces)
    assert np.abs(angles(every.SerializeToString(), x) - angles(int8.SerializeToString(), x)).max() < 1e-3
    # bad input: a float file as the INT8 one, one line naming it (exit 2)
    assert (
        main(
            [
                "debug",
                str(fusion_onnx),
                "--reference",
                str(fusion_onnx),
                "--faces",
                str(faces_dir),
                "-o",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "no QuantizeLinear/DequantizeLinear nodes" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_recipe_of_float_layers_holds_the_drift_it_was_searched_for(
    debug_run, int8_onnx, fusion_onnx, calib_afw, tmp_path
):
    """The search keeps the most harmful layers float one at a time until the drift holds; with
    every quantized layer float the INT8 graph gives the float angles; and `export
    --int8-float-layers` (NNCF with those nodes ignored) makes a file whose layers are float."""
    import onnx
    from fsanet.benchmarks.layer_drift import angles, load_pair, quantized_layers, with_float_layers

    from fsanet import runtimes

    r, _, faces, _ = debug_run
    recipe, ranked = r["recipe"], [c["node"] for c in r["all_contributors"]]
    steps = recipe["trajectory"]
    assert steps[0]["float_layers"] == 0 and steps[0]["drift_mean"] == pytest.approx(r["drift"]["mean"], abs=1e-6)
    assert [t["added"] for t in steps[1:]] == ranked[: len(steps) - 1]
    assert recipe["float_layers"] == ranked[: len(steps) - 1]  # 12 faces at 0.16 degree: 0.12 is reachable
    assert steps[-1]["drift_mean"] <= 0.12 < steps[-2]["drift_mean"]
    int8, ref = load_pair(int8_onnx, fusion_onnx)
    x = runtimes.open(int8_onnx).input_format.prepare(faces)
    all_float = with_float_layers(int8, ref, {n.name for n in quantized_layers(int8)})
    assert np.abs(angles(all_float.SerializeToString(), x) - angles(ref.SerializeToString(), x)).max() < 1e-3
    kept = tuple(recipe["float_layers"][:2])
    out = tmp_path / "recipe-int8.onnx"
    m = quantize_onnx(fusion_onnx, calib_afw, out, float_layers=kept)
    assert m["quantization"]["float_layers"] == sorted(kept)
    made = onnx.load(str(out))
    producers = {o: n.op_type for n in made.graph.node for o in n.output}
    for node in (n for n in made.graph.node if n.name in kept):
        assert all(producers.get(i) != "DequantizeLinear" for i in node.input), node.name
    with pytest.raises(DataError, match="no node named no_such_conv"):
        quantize_onnx(fusion_onnx, calib_afw, tmp_path / "bad.onnx", float_layers=("no_such_conv",))


def test_export_takes_a_recipe_and_refuses_a_node_the_model_lacks(fusion_checkpoint, calib_afw, tmp_path, capsys):
    from fsanet.cli import main

    calib_afw.save(tmp_path / "calib.npz")
    argv = ["export", str(fusion_checkpoint), "--calib", str(tmp_path / "calib.npz"), "--to", "onnx-int8"]
    assert main([*argv, "--int8-float-layers", "node_Conv_1185,no_such_conv", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "--int8-float-layers: fusion.onnx has no node named no_such_conv" in err and len(err.splitlines()) == 1
