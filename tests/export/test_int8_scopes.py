"""INT8 scopes chosen by measurement (`fsanet export --int8-objective`) on the authors' fusion:
candidates quantized by NNCF, judged on real HELEN faces, timed here."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from fsanet.export.int8_products import runs_on_tensorrt
from fsanet.export.int8_scopes import candidate_path, choose_scope, depthwise_convolutions, pareto
from fsanet.export.int8_scopes_report import report_paths
from onnx import numpy_helper

from fsanet import runtimes
from fsanet.accuracy import drift
from fsanet.cli import main
from fsanet.manifest import read_sidecar

BUDGET = 0.15


@pytest.fixture(scope="module")
def chosen(fusion_onnx, afw_calib, helen, tmp_path_factory):
    out = tmp_path_factory.mktemp("scopes") / "fusion-int8.onnx"
    faces = helen[0][:120]
    # every candidate within the budget is written (K larger than their number), best first
    written = choose_scope(fusion_onnx, afw_calib, out, BUDGET, faces, "120 HELEN faces", "latency", 16, timing_runs=60)
    return out, written


def test_the_split_fusion_has_six_depthwise_convolutions_per_stream_and_six_on_the_image(fusion_onnx):
    from fsanet.export.int8_scopes import _split_float_model

    # three members x two streams x six separable blocks, and the image's depthwise step split
    # into one convolution per stream
    assert len(depthwise_convolutions(_split_float_model(fusion_onnx))) == 3 * 2 * 6 + 6


def test_every_written_candidate_holds_the_budget_when_run_again(chosen, helen):
    out, written = chosen
    within = [r for r in written[0]["quantization"]["search"]["candidates"] if r["within_budget"]]
    assert len(written) == len(within) >= 2 and out.with_name("fusion-int8-2.onnx").exists()
    faces, reference = helen[0][:120], helen[1][:120]
    for path in (candidate_path(out, k) for k in range(len(written))):
        m = read_sidecar(path)
        with runtimes.open(path) as rt:
            d = drift(rt.predict(faces), reference)
        assert d["mean"] == pytest.approx(m["verification"]["drift_mean_deg"], abs=1e-5)
        assert d["mean"] <= BUDGET


def test_the_best_is_the_fastest_candidate_within_the_budget(chosen):
    out, written = chosen
    search = written[0]["quantization"]["search"]
    rows = {r["key"]: r for r in search["candidates"]}
    within = [r for r in rows.values() if r["within_budget"]]
    assert search["chosen"] == min(within, key=lambda r: r["p50_hot_ms"])["key"]
    assert rows[search["chosen"]]["rank"] == 1 and written[1]["quantization"]["search"]["rank"] == 2
    timed = sorted((r for r in within), key=lambda r: r["rank"])
    assert [r["p50_hot_ms"] for r in timed] == sorted(r["p50_hot_ms"] for r in timed)
    assert all("p50_hot_ms" not in r for r in rows.values() if not r["within_budget"])  # over budget: not timed
    md, js = report_paths(out)
    assert md.name == "fusion-int8.onnx.scopes.md"
    assert json.loads(js.read_text())["chosen"] == search["chosen"]
    text = md.read_text()
    assert all(r["scope"] in text for r in rows.values()) and "Machine:" in text


def _weight_source(model, node):
    """'float' when a node's weight is a float initializer, 'int8' when a DequantizeLinear of an int8
    constant feeds it."""
    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    w = node.input[1]
    if w in inits:
        return "float" if numpy_helper.to_array(inits[w]).dtype == np.float32 else "int8"
    p = producer.get(w)
    return "int8" if p is not None and p.op_type == "DequantizeLinear" else "float"


def test_each_scope_is_what_its_name_says(chosen, fusion_onnx):
    out, written = chosen
    for k, m in enumerate(written):
        path = candidate_path(out, k)
        rows = m["quantization"]["search"]["candidates"]
        scope = next(r for r in rows if r["rank"] == m["quantization"]["search"]["rank"] == k + 1)
        model = onnx.load(str(path))
        depthwise = set(depthwise_convolutions(model))
        convs = [n for n in model.graph.node if n.op_type == "Conv"]
        kinds = {n.name: _weight_source(model, n) for n in convs}
        if scope["key"].startswith("pw-"):  # all 42 depthwise convolutions keep float weights
            assert len(depthwise) == 42 and all(kinds[n] == "float" for n in depthwise)
        if scope["key"].startswith("relu-"):  # tanh's inputs are never quantized, so neither their convolutions
            tanh_inputs = {i for n in model.graph.node if n.op_type == "Tanh" for i in n.input}
            before_tanh = [n.name for n in convs if n.output[0] in tanh_inputs]
            assert len(before_tanh) == 21 and all(kinds[n] == "float" for n in before_tanh)
        pointwise = [kinds[n.name] for n in convs if n.name not in depthwise]
        assert ("int8" in pointwise) == (not scope["key"].startswith("none-"))  # no convolution int8 in `none-`
        big_dq = m["quantization"]["weight_only_int8_values"]
        assert (big_dq > 800_000) == scope["weight_only"]
        # int8 products: the large matrix weights stored as int8 for MatMulInteger, nothing float left of them
        products = [n for n in model.graph.node if n.op_type == "MatMulInteger"]
        assert (len(products) == 5) == (scope["matrices"] == "i8") and runs_on_tensorrt(path) == (not products)
        if products:
            assert m["quantization"]["int8_product_values"] > 800_000
            assert path.stat().st_size < 0.5 * fusion_onnx.stat().st_size


def test_the_int8_products_sit_on_the_capsule_transforms_and_the_mapping_layers(chosen):
    out, written = chosen
    rows = written[0]["quantization"]["search"]["candidates"]
    keys = {r["key"] for r in rows}
    # every float-weights scope has its int8-products sibling, and the float convolutions have theirs
    assert {k[:-2] + "i8" for k in keys if k.endswith("-wf")} | {"none-i8"} == {k for k in keys if k.endswith("-i8")}
    scopes = [m["quantization"]["scope"] for m in written]
    k = scopes.index("float convolutions, int8 matrix products")
    q = written[k]["quantization"]
    # three capsule transforms (21, 21 and 192 capsules x 64 x 48) and two members' dense mappings (64 x 960)
    assert len(q["int8_product_nodes"]) == 5 and q["int8_product_values"] == (21 + 21 + 192) * 64 * 48 + 2 * 64 * 960
    assert written[k]["calibration"] is None  # activations are scaled per call: no calibration set


def test_pareto_keeps_what_nothing_beats_in_drift_size_and_time():
    rows = [
        {"key": "a", "within_budget": True, "drift_mean_deg": 0.10, "size_bytes": 3, "p50_hot_ms": 5.0},
        {"key": "b", "within_budget": True, "drift_mean_deg": 0.12, "size_bytes": 3, "p50_hot_ms": 6.0},  # a beats it
        {"key": "c", "within_budget": True, "drift_mean_deg": 0.14, "size_bytes": 1, "p50_hot_ms": 9.0},  # smallest
        {"key": "d", "within_budget": False, "drift_mean_deg": 0.20, "size_bytes": 1, "p50_hot_ms": None},
    ]
    assert [r["key"] for r in pareto(rows) if r["pareto"]] == ["a", "c"]


def test_export_refuses_an_objective_it_cannot_honour(fusion_checkpoint, tmp_path, capsys):
    base = ["export", str(fusion_checkpoint), "--to", "onnx,onnx-int8", "-o", str(tmp_path / "out")]
    assert main([*base, "--int8-objective", "latency"]) == 2
    assert "--int8-objective needs --int8-max-drift" in capsys.readouterr().err
    assert main([*base, "--candidates", "3"]) == 2
    assert "--candidates ranks by --int8-objective" in capsys.readouterr().err
    only_float = ["export", str(fusion_checkpoint), "--to", "onnx", "--int8-objective", "size"]
    assert main([*only_float, "-o", str(tmp_path)]) == 2
    assert "add --to onnx-int8 or tflite-int8" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


INT8 = 9  # TFLite schema TensorType.INT8


def _input_types(path, op_names: tuple[str, ...], inputs: int = 1) -> list[tuple[str, ...]]:
    """For the first `inputs` inputs of every op of the `op_names` types of a TFLite file: 'int8'
    or 'float', and '+const' where the tensor is stored in the file (a weight). DEQUANTIZE has
    no name in the quantizer's table: builtin code 6."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfl

    model = tfl.read_model(str(path))
    graph, found = model.subgraphs[0], []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if tfl.TFL_OP_CODE_TO_NAME.get(builtin, "DEQUANTIZE" if builtin == 6 else None) in op_names:
            tensors = [graph.tensors[i] for i in op.inputs[:inputs]]
            found.append(tuple(_kind(t, model.buffers[t.buffer]) for t in tensors))
    return found


def _kind(tensor, buffer) -> str:
    stored = buffer.data is not None and len(buffer.data) > 0 or bool(getattr(buffer, "size", 0))
    return ("int8" if tensor.type == INT8 else "float") + ("+const" if stored else "")


def _activation_types(path, op_name: str) -> set[str]:
    return {types[0].removesuffix("+const") for types in _input_types(path, (op_name,))}


@pytest.fixture(scope="module")
def tflite_chosen(fusion_tflite, fusion_onnx, afw_calib, helen, tmp_path_factory):
    from fsanet.export.tflite_scopes import choose_tflite_scope

    out = tmp_path_factory.mktemp("tflite-scopes") / "fusion-int8.tflite"
    faces, reference = helen[0][:120], helen[1][:120]
    written = choose_tflite_scope(
        fusion_tflite, afw_calib, out, 0.25, reference, faces, "120 HELEN faces", "size", 12,
        reference_name=fusion_onnx.name, timing_runs=60,
    )  # fmt: skip
    return out, written


def test_tflite_scopes_hold_the_budget_and_are_what_their_names_say(tflite_chosen, helen):
    out, written = tflite_chosen
    rows = written[0]["quantization"]["search"]["candidates"]
    assert {r["key"] for r in rows} == {
        "float-w8", "float-i8", "conv-w8", "conv-wf", "conv-i8", "conv-dw-w8", "conv-dw-wf", "conv-dw-i8"
    }  # fmt: skip
    faces, reference = helen[0][:120], helen[1][:120]
    for k, m in enumerate(written):
        path = candidate_path(out, k)
        key = next(r["key"] for r in rows if r["rank"] == k + 1)
        with runtimes.open(path) as rt:
            d = drift(rt.predict(faces), reference)
        assert d["mean"] == pytest.approx(m["verification"]["drift_mean_deg"], abs=1e-5) and d["mean"] <= 0.25
        convs = _activation_types(path, "CONV_2D") | _activation_types(path, "DEPTHWISE_CONV_2D")
        if key.startswith("float-"):
            assert convs == {"float"}
        if key.startswith("conv-dw-"):
            assert _activation_types(path, "DEPTHWISE_CONV_2D") == {"int8"}
        matrices = [w for _, w in _input_types(path, ("FULLY_CONNECTED", "BATCH_MATMUL"), 2)]
        dequantized_weights = _input_types(path, ("DEQUANTIZE",)).count(("int8+const",))
        if key.endswith("-i8"):  # dynamic range: float activations times int8 weights, in the op itself
            # the capsule transforms and the dense mappings (the routing products have no weight)
            assert matrices.count("int8+const") >= 5 and "float+const" not in matrices and not dequantized_weights
        elif key.endswith("-w8"):  # weight-only: int8 weights dequantized, then the float op
            assert "int8+const" not in matrices and "float+const" not in matrices and dequantized_weights >= 5
        else:
            assert "float+const" in matrices and not dequantized_weights
    sizes = {r["key"]: r["size_bytes"] for r in rows}
    # three quarters of the fusion's values are dense and capsule matrices: 4 bytes each, or 1
    assert sizes["conv-wf"] - sizes["conv-w8"] > 2_000_000
    assert abs(sizes["conv-i8"] - sizes["conv-w8"]) < 100_000  # the same int8 matrices, stored once
    ranked_sizes = [sizes[next(r["key"] for r in rows if r["rank"] == k + 1)] for k in range(len(written))]
    assert ranked_sizes == sorted(ranked_sizes)  # objective size: smallest first
    assert (out.parent / "fusion-int8.tflite.scopes.md").exists()


def test_export_command_writes_the_best_tflite_scopes_and_their_report(fusion_checkpoint, shared_data, tmp_path):
    from fsanet import calib

    calib.build(shared_data / "real-faces" / "afw", 32, seed=0).save(tmp_path / "calib.npz")
    out = tmp_path / "out"
    argv = ["export", str(fusion_checkpoint), "--to", "tflite-int8", "--calib", str(tmp_path / "calib.npz"),
            "--faces", str(shared_data / "real-faces" / "helen-trainset"), "--int8-max-drift", "0.5",
            "--int8-objective", "size", "--candidates", "2", "-o", str(out)]  # fmt: skip
    assert main(argv) == 0
    stem = fusion_checkpoint.stem
    best, second = read_sidecar(out / f"{stem}-int8.tflite"), read_sidecar(out / f"{stem}-int8-2.tflite")
    assert best["quantization"]["search"]["objective"] == "size" and best["verification"]["drift_mean_deg"] <= 0.5
    assert best["size_bytes"] <= second["size_bytes"]
    assert (out / f"{stem}-int8.tflite.scopes.md").exists() and not (out / f"{stem}-int8-3.tflite").exists()


def test_a_kit_builds_its_tensorrt_int8_engine_from_a_qdq_file_not_from_int8_products(chosen):
    from fsanet.kit.engines import tensorrt_source
    from fsanet.kit.layout import Artifact

    out, written = chosen
    files = [candidate_path(out, k) for k in range(len(written))]
    products = [f for f, m in zip(files, written, strict=True) if "int8_product_nodes" in m["quantization"]]
    qdq = [f for f in files if f not in products]
    assert products and qdq
    arts = [Artifact(f.name, f, "onnxruntime", "int8", None) for f in products + qdq]  # products listed first
    assert tensorrt_source(arts, "int8").path == qdq[0]
    assert tensorrt_source(arts[: len(products)], "int8") is None  # then the kit's calibration set is needed


def test_an_export_that_feeds_tensorrt_too_leaves_out_the_int8_products(fusion_checkpoint, shared_data, tmp_path):
    from fsanet import calib

    calib.build(shared_data / "real-faces" / "afw", 32, seed=0).save(tmp_path / "calib.npz")
    out = tmp_path / "out"
    argv = ["export", str(fusion_checkpoint), "--to", "onnx-int8,tensorrt-int8", "--skip-unavailable",
            "--calib", str(tmp_path / "calib.npz"), "--faces", str(shared_data / "real-faces" / "helen-trainset"),
            "--int8-max-drift", "0.5", "--int8-objective", "size", "-o", str(out)]  # fmt: skip
    assert main(argv) == 0
    best = out / f"{fusion_checkpoint.stem}-int8.onnx"
    keys = {r["key"] for r in read_sidecar(best)["quantization"]["search"]["candidates"]}
    assert len(keys) == 6 and not any(k.endswith("-i8") for k in keys) and runs_on_tensorrt(best)
