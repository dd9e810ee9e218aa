"""INT8 scopes chosen by what they cost where they will run, not by drift alone:
`fsanet export --to onnx-int8 --int8-max-drift D --int8-objective latency|size [--candidates K]`.

Measured on the authors' fusion (ONNX Runtime 1.32, Zen 3, `fsanet profile`): ONNX Runtime
turns a convolution's Q/DQ into an int8 QLinearConv only where the convolution's output is
quantized again, so 78 of its 102 quantized convolutions ran in float with their int8 weights
dequantized on every call, and dequantizing the weight-only int8 capsule transform (590 k
values) was the slowest node (17% of the kernel time). What is fastest therefore depends on the runtime and the
machine, and is measured: every candidate scope is quantized by NNCF, judged on the real faces,
and those within the drift budget are timed against the float file in one interleaved run
(`benchmarks.bench.interleaved_latency`: hot and in the loop, batch 1, until each p50 is known
to +-3%). The objective picks among them; the Pareto table shows the rest.

A candidate is a set of node names kept float (NNCF's ignored scope) and where the large
MatMul/Gemm constants live: the conv trunk whole, the convolutions not feeding tanh (the chains
ONNX Runtime can run as QLinearConv), the pointwise convolutions only, or no convolution; with
or without the layers `fsanet debug` ranks as the most harmful (its `--max-drift` recipe,
computed here on the full-scope candidate); each with int8 matrix weights (dequantized in the
graph), float matrix weights, or int8 matrix products (export.int8_products: the weights int8
and the activations quantized per call, ONNX Runtime only). An int8-products candidate is its
float-weights sibling with the products converted, so it costs no second NNCF run.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsanet.errors import DataError, ExportError

STAGE = "onnx-int8"
OBJECTIVES = ("latency", "size")
RECIPE_FACES = 100  # faces the layer-alone drifts of the recipe are measured on (the search uses all)
TIMING_RUNS = 1000  # cap of timed calls per candidate and state; the run stops at +-P50_WITHIN
P50_WITHIN = 0.03


CONVOLUTIONS = {  # which convolutions a candidate quantizes
    "all": "all convolutions",
    "relu": "convolutions not feeding tanh",
    "pw": "pointwise convolutions",
    "none": "float convolutions",
}
MATRICES = {  # where the large MatMul/Gemm constants live
    "w8": "int8 matrix weights",  # dequantized to float in the graph on every call
    "wf": "float matrix weights",
    "i8": "int8 matrix products",  # int8 x int8 with activations quantized per call (ONNX Runtime)
}
NON_FUSING = ("Tanh", "Sigmoid")  # activations ONNX Runtime keeps out of a QLinearConv (Relu it fuses)


@dataclass(frozen=True)
class Scope:
    """One candidate: which convolutions go to int8, and where the matrix weights live."""

    convolutions: str  # a key of CONVOLUTIONS
    recipe: bool  # the layers of `fsanet debug --max-drift`'s recipe float
    matrices: str  # a key of MATRICES

    @property
    def weight_only(self) -> bool:
        return self.matrices == "w8"

    @property
    def name(self) -> str:
        recipe = " less the recipe" if self.recipe else ""
        return f"{CONVOLUTIONS[self.convolutions]}{recipe}, {MATRICES[self.matrices]}"

    @property
    def key(self) -> str:
        return "-".join([self.convolutions, *(["recipe"] if self.recipe else []), self.matrices])


@dataclass
class Candidate:
    scope: object  # a Scope here, a TfliteScope (export.tflite_scopes): `name` and `key`
    float_layers: tuple[str, ...]
    manifest: dict  # the file's manifest, less verification and search
    path: Path  # a temporary file (an ONNX one with the manifest embedded)
    drift: dict
    size: int
    model: object | None = None  # the ONNX ModelProto (written with the final manifest embedded)
    timing: dict | None = None

    def row(self, max_drift: float) -> dict:
        return {
            "scope": self.scope.name,
            "key": self.scope.key,
            "float_layers": len(self.float_layers) if isinstance(self.scope, Scope) else None,  # ONNX node names
            "weight_only": getattr(self.scope, "weight_only", None),
            "matrices": getattr(self.scope, "matrices", None),
            "drift_mean_deg": self.drift["mean"],
            "drift_max_deg": self.drift["max"],
            "within_budget": bool(self.drift["mean"] <= max_drift),
            "size_bytes": self.size,
            **(self.timing or {}),
        }


def check_objective(objective: str | None, candidates: int, max_drift: float | None, verify) -> None:
    """Refuse an objective or a candidate count that cannot be honoured, before anything is built."""
    if objective is not None and objective not in OBJECTIVES:
        raise DataError(f"--int8-objective {objective!r}: takes {' or '.join(OBJECTIVES)}")
    if candidates < 1:
        raise DataError(f"--candidates {candidates}: give 1 or more")
    if candidates > 1 and objective is None:
        raise DataError("--candidates ranks by --int8-objective latency|size; give one")
    if objective is not None and (max_drift is None or verify is None):
        raise DataError(
            "--int8-objective needs --int8-max-drift D (the budget) and --faces FACES (real faces not calibrated on)"
        )


def depthwise_convolutions(model) -> list[str]:
    """Names of the Conv nodes with one group per input channel (shapes from the initializers)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv" or node.input[1] not in inits:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        per_group = numpy_helper.to_array(inits[node.input[1]]).shape[1]
        if group > 1 and per_group == 1:
            names.append(node.name)
    return names


def convolutions_before_tanh(model) -> list[str]:
    """Convolutions whose output feeds tanh (or sigmoid), and the convolutions that feed only
    those: ONNX Runtime fuses a Q/DQ convolution into QLinearConv only when its output is
    quantized again, which a tanh input is not, and a convolution whose consumers are all float
    loses its output quantizer too. Float, they leave int8 chains that run as QLinearConv."""
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    floats = {c.name for c in convs if any(u.op_type in NON_FUSING for u in consumers.get(c.output[0], []))}
    grown = True
    while grown:
        feeding = {
            c.name
            for c in convs
            if c.name not in floats
            and (users := consumers.get(c.output[0], []))
            and all(u.op_type == "Conv" and u.name in floats for u in users)
        }
        floats |= feeding
        grown = bool(feeding)
    return sorted(floats)


def _split_float_model(float_path: Path):
    import onnx
    from fsanet.export.split_depthwise import split_image_depthwise

    model = onnx.load(str(float_path))
    split_image_depthwise(model)  # as int8_model does: the names NNCF sees
    return model


def _build(scope: Scope, float_layers, float_path: Path, calib, reference, verify, tmp: Path) -> Candidate:
    from fsanet.export import artifact
    from fsanet.export.quantize import FLOAT_OPS, int8_model

    model, quantization = int8_model(float_path, calib, FLOAT_OPS, tuple(float_layers), scope.weight_only)
    manifest = artifact.derived_manifest(float_path, STAGE, precision="int8")
    manifest.update(quantization=dict(quantization, scope=scope.name), calibration=artifact.calibration_record(calib))
    return _judged(scope, float_layers, model, manifest, reference, verify, tmp)


def _judged(scope: Scope, float_layers, model, manifest: dict, reference, verify, tmp: Path) -> Candidate:
    """The candidate of `model`: saved (manifest embedded) and its drift measured through ONNX Runtime."""
    import onnx
    from fsanet.export import artifact

    from fsanet.accuracy import drift

    artifact.embed_onnx(model, manifest)
    path = tmp / f"{scope.key}.onnx"
    onnx.save(model, str(path))
    d = drift(artifact.predict(path, verify, STAGE), reference)
    return Candidate(scope, tuple(sorted(float_layers)), manifest, path, d, path.stat().st_size, model)


def _products(source: Candidate | None, float_path: Path, reference, verify, tmp: Path) -> Candidate:
    """The int8-products sibling of a float-weights candidate (`source`), or with None the float
    convolutions of `float_path` with int8 products (no calibration: nothing else is quantized)."""
    import onnx
    from fsanet.export import artifact
    from fsanet.export.int8_products import int8_products
    from fsanet.export.quantize import WEIGHT_ONLY_MIN_VALUES

    if source is None:
        scope, model = Scope("none", False, "i8"), onnx.load(str(float_path))
        layers = tuple(n.name for n in model.graph.node if n.op_type == "Conv")
        manifest = artifact.derived_manifest(float_path, STAGE, precision="int8")
        manifest.update(quantization={"method": "convolutions float", "weight_only_int8_values": 0}, calibration=None)
    else:
        scope = Scope(source.scope.convolutions, source.scope.recipe, "i8")
        model, layers, manifest = source.model, source.float_layers, dict(source.manifest)
    model, products = int8_products(model, WEIGHT_ONLY_MIN_VALUES)
    q = manifest["quantization"]
    method = f"{q['method']}; large MatMul products int8, activations quantized per call (ONNX Runtime only)"
    manifest["quantization"] = dict(q, method=method, scope=scope.name, **products)
    return _judged(scope, layers, model, manifest, reference, verify, tmp)


def _recipe(full: Candidate, float_path: Path, verify, max_drift: float) -> list[str] | None:
    """`fsanet debug --max-drift`'s recipe on the full-scope candidate: the fewest layers, most
    harmful alone first, to keep float for the budget; [] when it holds already, None when no
    number of layers does."""
    if full.drift["mean"] <= max_drift:
        return []
    from fsanet.benchmarks.layer_drift import debug_onnx

    result = debug_onnx(full.path, float_path, verify, min(RECIPE_FACES, len(verify)), max_drift=max_drift)
    return result["recipe"]["float_layers"]


def build_candidates(
    float_path: Path, calib, verify, max_drift: float, tmp: Path, progress=None, products: bool = True
) -> list[Candidate]:
    """Every candidate scope quantized and judged on `verify` against the float file;
    `products`: the int8-products candidates too (not for a file that must feed TensorRT)."""
    from fsanet.export import artifact

    reference = artifact.predict(float_path, verify, STAGE)
    split = _split_float_model(float_path)
    kept = {"all": (), "relu": convolutions_before_tanh(split), "pw": depthwise_convolutions(split)}
    full = _build(Scope("all", False, "w8"), (), float_path, calib, reference, verify, tmp)
    _tick(progress)
    recipe = _recipe(full, float_path, verify, max_drift)
    built = [full]
    for scope in scopes(bool(recipe)):
        if scope == full.scope:
            continue
        layers = set(kept[scope.convolutions]) | set(recipe if scope.recipe else ())
        built.append(_build(scope, layers, float_path, calib, reference, verify, tmp))
        _tick(progress)
        if products and scope.matrices == "wf":
            built.append(_products(built[-1], float_path, reference, verify, tmp))
    if products:
        built.append(_products(None, float_path, reference, verify, tmp))
    return built


def scopes(with_recipe: bool) -> list[Scope]:
    """The candidates NNCF quantizes: each conv scope with int8 and float matrix weights; with a
    recipe, the full scope with and without it and the narrower scopes less it."""
    return [
        Scope(convs, recipe, matrices)
        for convs in CONVOLUTIONS
        if convs != "none"
        for recipe in ((False, True) if convs == "all" and with_recipe else (with_recipe,))
        for matrices in ("w8", "wf")
    ]


def time_candidates(
    float_path: Path, candidates: list[Candidate], crops: np.ndarray, progress=None, runs: int = TIMING_RUNS
) -> dict:
    """The float file and `candidates` in one interleaved run at batch 1 (hot and in the loop);
    each candidate's `timing` gets its p50s and its hot p50 over the float file's with a 95%
    interval. Returns the float file's p50s."""
    from fsanet.benchmarks.bench import BenchConfig, batch_calls, interleaved_latency
    from fsanet.benchmarks.intervals import ratio_interval, resampled_p50

    from fsanet import runtimes

    cfg = BenchConfig(batches=(1,), runs=runs, warmup=10, p50_within=P50_WITHIN, end_to_end=False, memory=False)
    rts = {"float": runtimes.open(str(float_path), threads=cfg.threads)}
    for c in candidates:  # a candidate has no sidecar: its manifest gives the input format
        rts[c.scope.key] = runtimes.open(str(c.path), runtimes.InputFormat.from_manifest(c.manifest), cfg.threads)
    try:
        rounds, _ = interleaved_latency(batch_calls(rts, crops, 1), cfg, progress=progress)
    finally:
        for rt in rts.values():
            rt.close()
    p50 = {s: {n: float(np.median(np.concatenate(r))) for n, r in by.items()} for s, by in rounds.items()}
    boot = resampled_p50(rounds["hot"])
    for c in candidates:
        k = c.scope.key
        ci = ratio_interval(boot[k], boot["float"])
        c.timing = {
            "p50_hot_ms": p50["hot"][k],
            "p50_loop_ms": p50["loop"][k],
            "p50_hot_over_float": p50["hot"][k] / p50["hot"]["float"],
            "p50_hot_over_float_ci": [ci["low"], ci["high"]],
            "p50_loop_over_float": p50["loop"][k] / p50["loop"]["float"],
        }
    hot_rounds = len(rounds["hot"]["float"])
    return {"p50_hot_ms": p50["hot"]["float"], "p50_loop_ms": p50["loop"]["float"], "hot_rounds": hot_rounds}


def ranked(within: list[Candidate], objective: str) -> list[Candidate]:
    """The timed candidates within the budget, best first: fastest hot p50 (latency) or smallest
    file (size, ties by p50)."""
    if objective == "latency":
        return sorted(within, key=lambda c: (c.timing["p50_hot_ms"], c.size))
    return sorted(within, key=lambda c: (c.size, c.timing["p50_hot_ms"]))


def pareto(rows: list[dict]) -> list[dict]:
    """Marks each row `pareto`: no other row within the budget is at least as good in drift,
    size and hot p50 and better in one."""
    keys = ("drift_mean_deg", "size_bytes", "p50_hot_ms")
    timed = [r for r in rows if r["within_budget"] and r.get("p50_hot_ms") is not None]
    for r in rows:
        r["pareto"] = r in timed and not any(
            all(o[k] <= r[k] for k in keys) and any(o[k] < r[k] for k in keys) for o in timed if o is not r
        )
    return rows


def choose_scope(
    float_path, calib, output, max_drift: float, verify: np.ndarray, verify_name: str, objective: str,
    candidates: int = 1, progress=None, timing_runs: int = TIMING_RUNS, products: bool = True,
) -> list[dict]:  # fmt: skip
    """Build, judge and time every candidate ONNX scope; write the best (by `objective`, within
    the mean drift budget) as `output` and the next `candidates - 1` as `<stem>-2.onnx`, ... (see
    `select_and_write`). Returns the written files' manifests, best first. `timing_runs`: the
    cap of timed calls per candidate and state; `products`: False leaves out the int8-products
    candidates (ONNX Runtime only), for a file that feeds `--to tensorrt-int8` too."""
    float_path = Path(float_path)
    with tempfile.TemporaryDirectory() as tmp:
        built = build_candidates(float_path, calib, verify, max_drift, Path(tmp), progress, products)
        return select_and_write(
            built, float_path, output, max_drift, verify, verify_name, objective, candidates, STAGE, float_path.name,
            progress, timing_runs,
        )  # fmt: skip


def select_and_write(
    built: list[Candidate], baseline: Path, output, max_drift: float, verify: np.ndarray, verify_name: str,
    objective: str, candidates: int, stage: str, reference_name: str, progress=None, timing_runs: int = TIMING_RUNS,
) -> list[dict]:  # fmt: skip
    """Time the candidates within the budget against `baseline` (the float file of the same
    runtime), rank them by `objective`, and write the best `candidates` (`candidate_path`);
    `reference_name`: the file whose angles the drift was measured against. The
    search (table, machine, choice) goes into each manifest's `quantization.search` and into
    `<file>.scopes.md/.json` beside them."""
    from fsanet.export.int8_scopes_report import write_report

    output = Path(output)
    within = [c for c in built if c.drift["mean"] <= max_drift]
    if not within:
        table = ", ".join(f"{c.scope.name}: {c.drift['mean']:.3f}" for c in built)
        raise ExportError(stage, f"no INT8 scope met a mean drift of {max_drift} degrees ({table})")
    float_timing = time_candidates(baseline, within, verify, progress, timing_runs)
    float_timing["file"] = Path(baseline).name
    best = ranked(within, objective)[:candidates]
    search = _record(built, best, objective, max_drift, float_timing, reference_name, verify_name, len(verify))
    write_report(search, output)
    return [_write(c, k, search, output, verify_name, len(verify)) for k, c in enumerate(best)]


def candidate_path(output: Path, rank: int) -> Path:
    """The best candidate is `output`; the next ones `<stem>-2.onnx`, `<stem>-3.onnx`, ..."""
    return output if rank == 0 else output.with_name(f"{output.stem}-{rank + 1}{output.suffix}")


def _record(built, best, objective, max_drift, float_timing, reference, faces, count) -> dict:
    from fsanet.machine import fingerprint

    rows = pareto([c.row(max_drift) for c in built])
    rank = {c.scope.key: k + 1 for k, c in enumerate(best)}
    for r in rows:
        r["rank"] = rank.get(r["key"])
    return {
        "mode": "scopes",
        "objective": objective,
        "max_drift_deg": max_drift,
        "reference": reference,
        "faces": faces,
        "count": int(count),
        "float": float_timing,
        "machine": fingerprint(1),
        "candidates": rows,
        "chosen": best[0].scope.key,
    }


def _write(c: Candidate, rank: int, search: dict, output: Path, faces: str, count: int) -> dict:
    from fsanet.export import artifact

    manifest = dict(c.manifest)
    manifest["quantization"] = dict(manifest["quantization"], search=dict(search, rank=rank + 1))
    manifest["verification"] = artifact.verification_record(search["reference"], faces, count, c.drift)
    if c.model is not None:
        return artifact.write_onnx(c.model, candidate_path(output, rank), manifest)
    return artifact.write_copy(candidate_path(output, rank), c.path, manifest)


def _tick(progress) -> None:
    if progress is not None:
        progress.update(1)
