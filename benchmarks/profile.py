"""`fsanet profile`: where an ONNX model's time goes, operator by operator.

ONNX Runtime's own profiler times every kernel of the graph it really runs (after its fusions
and layout changes: a `Conv` + `Relu` pair is one `FusedConv`-style node, NCHWc convolutions
are named `*_nchwc`). The profiler itself costs a few microseconds per node, so small nodes look
bigger than they are: the report gives the batch's p50 without the profiler next to the
profiled sum, and shares of kernel time are the numbers to compare. Convolutions are split by
kind (1x1, depthwise 3x3, grouped, ...) with their FLOPs, so achieved GFLOP/s per kind shows
which kernels run near the CPU's peak and which do not.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from fsanet.benchmarks.latency import batch_of, time_calls

from fsanet.errors import DataError
from fsanet.files import atomic_write, write_text
from fsanet.machine import describe as describe_machine


def profile_onnx(
    model: str,
    crops: np.ndarray,
    batch: int = 1,
    threads: int = 1,
    runs: int = 200,
    warmup: int = 30,
    provider: str = "cpu",
    denormals_as_zero: bool = True,
) -> dict:
    """Per-node and per-operator-type kernel time of `model` (path, optionally `path@format`)."""
    from fsanet import runtimes

    if runtimes.model_file(model).suffix.lower() != ".onnx":
        raise DataError(f"{model}: profile reads ONNX Runtime's profiler, so it takes .onnx files only")
    if len(crops) == 0:
        raise DataError("profile: no faces to run on")
    options = {"threads": threads, "provider": provider, "denormals_as_zero": denormals_as_zero}
    with runtimes.open(model, **options) as rt:
        x = rt.input_format.prepare(batch_of(crops, batch))
        plain = time_calls(lambda: rt.infer(x), runs, warmup)
    with tempfile.TemporaryDirectory() as tmp, runtimes.open(model, profile_prefix=f"{tmp}/ort", **options) as rt:
        time_calls(lambda: rt.infer(x), runs, warmup)
        events = json.loads(Path(rt.end_profiling()).read_text())
        source = str(rt.path)
    nodes, run_ms = _kernel_times(events, runs)
    from fsanet.machine import fingerprint

    return {
        "machine": fingerprint(threads),
        "model": source,
        "batch": batch,
        "threads": threads,
        "provider": provider,
        "runs": runs,
        "p50_ms": float(np.median(plain)),
        "profiled_run_ms": run_ms,
        "kernel_ms": sum(n["us_per_run"] for n in nodes) / 1e3,
        "op_types": _by_type(nodes),
        "nodes": nodes,
    }


def _kernel_times(events: list, runs: int) -> tuple[list[dict], float]:
    """Kernel time per node, averaged over the last `runs` model runs (warm-up runs dropped)."""
    model_runs = sorted((e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"), key=_ts)
    if len(model_runs) < runs:
        raise DataError(f"profile: ONNX Runtime's trace holds {len(model_runs)} runs, expected at least {runs}")
    timed = model_runs[-runs:]
    start = _ts(timed[0])
    totals: dict[str, dict] = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or _ts(e) < start:
            continue
        name = e["name"].removesuffix("_kernel_time")
        n = totals.get(name)
        if n is None:
            n = totals[name] = _describe(name, e["args"])
        n["us"] += e["dur"]
    nodes = [
        {k: v for k, v in n.items() if k != "us"} | {"us_per_run": n["us"] / runs}
        for n in sorted(totals.values(), key=lambda n: -n["us"])
    ]
    return nodes, float(np.mean([e["dur"] for e in timed]) / 1e3)


def _shapes(args: dict, key: str) -> list[list[int]]:
    return [next(iter(s.values())) for s in args.get(key, [])]


def _describe(name: str, args: dict) -> dict:
    """A node's operator, refined for convolutions (pointwise, depthwise, ...), and its FLOPs
    (2 x multiply-accumulates of Conv / MatMul / Gemm, from the shapes the profiler records)."""
    op = args.get("op_name", "?")
    ins, outs = _shapes(args, "input_type_shape"), _shapes(args, "output_type_shape")
    kind, flops = op, 0
    weight = _conv_weight(op, ins)
    if op.endswith("Conv") and weight is not None and outs:
        out_channels, per_group, *kernel = weight
        # NCHW, or NHWC where ONNX Runtime moved a QLinearConv chain to channels-last
        channels = ins[0][1] if outs[0][1] == out_channels else ins[0][-1]
        groups = channels // per_group if per_group else 1
        if groups > 1 and groups == channels:
            multiplier = f" (x{out_channels // channels})" if out_channels != channels else ""
            kind = f"{op} depthwise {'x'.join(map(str, kernel))}{multiplier}"
        elif groups > 1:
            kind = f"{op} grouped ({groups} groups)"
        else:
            kind = f"{op} {'x'.join(map(str, kernel))}"
        flops = 2 * math.prod(outs[0]) * per_group * math.prod(kernel)
    elif op in ("MatMul", "FusedMatMul", "Gemm", "FusedGemm") and ins and outs:
        flops = 2 * math.prod(outs[0]) * ins[0][-1]
    return {"node": name, "op_type": op, "kind": kind, "output_shapes": outs, "flops": flops, "us": 0.0}


def _conv_weight(op: str, ins: list[list[int]]) -> list[int] | None:
    """A convolution's weight shape (M, C/group, kH, kW): input 1, or input 3 of QLinearConv
    (x, x_scale, x_zero_point, w, ...); None when the profiler recorded no such input."""
    k = 3 if op.startswith("QLinear") else 1
    return ins[k] if len(ins) > k and len(ins[k]) >= 3 else None


def _ts(event: dict) -> int:
    return int(event["ts"])


def _by_type(nodes: list[dict]) -> list[dict]:
    """Nodes grouped by kind (operator type; convolutions by kernel shape and grouping)."""
    total = sum(n["us_per_run"] for n in nodes) or 1.0
    groups: dict[str, list] = defaultdict(list)
    for n in nodes:
        groups[n["kind"]].append(n)
    rows = []
    for kind, members in groups.items():
        us = sum(n["us_per_run"] for n in members)
        flops = sum(n["flops"] for n in members)
        gflops = flops / us / 1e3 if flops and us else None
        rows.append(
            {"op_type": kind, "nodes": len(members), "us_per_run": us, "share": us / total}
            | {"mflop": flops / 1e6, "gflops_per_s": gflops}
        )
    return sorted(rows, key=lambda r: -r["us_per_run"])


def markdown(result: dict, top: int = 20) -> str:
    lines = [
        f"# fsanet profile: {Path(result['model']).name}",
        "",
        f"Batch {result['batch']}, {result['threads']} thread(s), provider {result['provider']}, "
        f"{result['runs']} profiled runs after warm-up. p50 without the profiler: {result['p50_ms']:.3f} ms; "
        f"with it, a run took {result['profiled_run_ms']:.3f} ms, of which kernels {result['kernel_ms']:.3f} ms "
        "(the profiler adds a few us per node: compare shares).",
        f"Machine: {describe_machine(result['machine'])}." if result.get("machine") else "",
        "",
        "| operator | nodes | us per run | share of kernel time | MFLOP | GFLOP/s |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['op_type']} | {r['nodes']} | {r['us_per_run']:.1f} | {r['share']:.1%} | "
            + (f"{r['mflop']:.2f} | {r['gflops_per_s']:.1f} |" if r["gflops_per_s"] else "- | - |")
            for r in result["op_types"]
        ),
        "",
        f"Slowest {min(top, len(result['nodes']))} nodes:",
        "",
        "| node | operator | output shape | us per run |",
        "|---|---|---|---|",
        *(
            f"| {n['node']} | {n['kind']} | {n['output_shapes']} | {n['us_per_run']:.1f} |"
            for n in result["nodes"][:top]
        ),
        "",
        "![time per operator](profile.png)",
        "",
    ]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> Path:
    from matplotlib.figure import Figure  # no pyplot: the caller's matplotlib backend stays as it is

    rows = result["op_types"][::-1]
    fig = Figure(figsize=(7, 0.3 * len(rows) + 1.2))
    ax = fig.subplots()
    ax.barh([r["op_type"] for r in rows], [r["us_per_run"] for r in rows])
    ax.set_xlabel(f"us per run (batch {result['batch']}, ONNX Runtime profiler)")
    ax.set_title(f"{Path(result['model']).name}: kernel time per operator type", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    return path


def write_reports(result: dict, out_dir: str | Path, top: int = 20) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "profile.json", json.dumps(result, indent=2) + "\n")
    write_text(out / "profile.md", markdown(result, top))
    return {"json": out / "profile.json", "markdown": out / "profile.md", "plot": plot(result, out / "profile.png")}


# -- TensorRT engines -------------------------------------------------------------------------------
# trtexec's split of one inference (NVIDIA/TensorRT samples/common/sampleReporting.cpp, "Explanations
# of the performance metrics"): H2D latency, GPU compute time and D2H latency from CUDA events, their
# sum the latency of one query; enqueue time is the host's time in the enqueue call. fsanet adds the
# host's wall time around copy + enqueue + synchronize, which includes what the events miss.
SPLIT = (
    ("h2d_ms", "H2D latency"),
    ("compute_ms", "GPU compute time"),
    ("d2h_ms", "D2H latency"),
    ("latency_ms", "latency (H2D + compute + D2H)"),
    ("enqueue_ms", "enqueue time (host)"),
    ("wall_ms", "wall time (host: copy + enqueue + sync)"),
)


def latency_split(records: list[dict]) -> dict:
    """p50/p90/p99/mean of each part of trtexec's split over per-call records (TensorRTRuntime
    `timings` with gpu_timing=True), and trtexec's warnings where one part bounds the throughput."""
    if not records:
        raise DataError("profile: no timed TensorRT calls to summarise")
    table = {key: np.array([r[key] for r in records], dtype=float) for key, _ in SPLIT if key != "latency_ms"}
    table["latency_ms"] = table["h2d_ms"] + table["compute_ms"] + table["d2h_ms"]
    stats = {
        key: {
            "p50": float(np.median(v)),
            "p90": float(np.percentile(v, 90)),
            "p99": float(np.percentile(v, 99)),
            "mean": float(v.mean()),
        }  # fmt: skip
        for key, v in table.items()
    }
    compute = stats["compute_ms"]["p50"]
    bound = [
        what
        for key, what in (
            ("enqueue_ms", "enqueue time"),
            ("h2d_ms", "host-to-device copies"),
            ("d2h_ms", "device-to-host copies"),
        )  # fmt: skip
        if stats[key]["p50"] >= compute
    ]
    return {"runs": len(records), **stats, "bound_by": bound}


def layer_profile(times: list[dict], report: list[dict] | None, iterations: int) -> dict:
    """Per-layer times (runtimes.tensorrt.LayerTimes rows) in the tables of the ONNX Runtime profile:
    layers grouped by type ("op_types") and each layer ("nodes"), joined by name with the layer
    report for type, precision and output shapes where there is one."""
    info = {r["name"]: r for r in report or []}
    nodes = []
    for t in sorted(times, key=lambda t: -t["mean_ms"]):
        r = info.get(t["name"], {})
        kind = " ".join(x for x in (r.get("type"), r.get("precision")) if x) or "?"
        nodes.append({"node": t["name"], "op_type": r.get("type", "?"), "kind": kind,
                      "output_shapes": r.get("output_shapes", []), "flops": 0,
                      "us_per_run": t["mean_ms"] * 1e3, "median_us": t["median_ms"] * 1e3})  # fmt: skip
    total = sum(n["us_per_run"] for n in nodes) or 1.0
    groups: dict[str, list] = defaultdict(list)
    for n in nodes:
        groups[n["kind"]].append(n)
    op_types = [
        {
            "op_type": kind,
            "nodes": len(members),
            "us_per_run": sum(n["us_per_run"] for n in members),
            "share": sum(n["us_per_run"] for n in members) / total,
            "mflop": None,
            "gflops_per_s": None,
        }  # fmt: skip
        for kind, members in groups.items()
    ]
    return {"iterations": iterations, "kernel_ms": total / 1e3 if nodes else 0.0,
            "op_types": sorted(op_types, key=lambda r: -r["us_per_run"]), "nodes": nodes}  # fmt: skip


def profile_engine(
    engine: str | Path,
    out_dir: str | Path,
    crops: np.ndarray | None = None,
    *,
    batch: int = 1,
    runs: int = 200,
    warmup: int = 30,
    per_layer: bool = False,
    cuda_graph: bool = False,
    host_memory: str = "pinned",
    top: int = 20,
) -> str:
    """`fsanet profile ENGINE`: the precision each layer of a TensorRT engine runs in, from the
    layer report written beside it at build time (fsanet.export.trt_layers; needs no GPU). With
    `crops`, also runs the engine: trtexec's latency split (CUDA events; with `cuda_graph`, the
    enqueue replayed from a CUDA graph) and, with `per_layer`, TensorRT's per-layer times (an
    IProfiler, in a separate run without the graph, as trtexec --separateProfileRun).
    Writes profile.md and profile.json to `out_dir` and returns the Markdown."""
    from fsanet.export.trt_layers import precision_counts, read_report, report_path

    engine, out = Path(engine), Path(out_dir)
    if crops is None and (per_layer or cuda_graph or host_memory != "pinned"):
        raise DataError("profile: --per-layer, --cuda-graph and --host-memory run the engine; give --faces or --data")
    report = read_report(report_path(engine)) if crops is None or report_path(engine).is_file() else None
    result = {"model": str(engine), "precisions": precision_counts(report) if report else None, "layers": report}
    if crops is not None:
        result |= _run_engine(engine, crops, batch, runs, warmup, per_layer, cuda_graph, host_memory, report)
    text = engine_markdown(result, top)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "profile.json", json.dumps(result, indent=2) + "\n")
    write_text(out / "profile.md", text)
    return text


def _run_engine(engine, crops, batch, runs, warmup, per_layer, cuda_graph, host_memory, report) -> dict:
    from fsanet import runtimes
    from fsanet.machine import fingerprint

    if len(crops) == 0:
        raise DataError("profile: no faces to run on")
    options = {"cuda_graph": cuda_graph, "host_memory": host_memory, "gpu_timing": True}
    with runtimes.open(engine, **options) as rt:
        x = rt.input_format.prepare(batch_of(crops, batch))
        time_calls(lambda: rt.infer(x), runs, warmup)
        records = rt.timings[-runs * -(-len(x) // rt.fixed_batch) :]  # the timed calls (a batch may be pieces)
        result = {"machine": fingerprint(1), "device": rt.device, "executes_on": rt.executes_on(), "batch": batch,
                  "runs": runs, "cuda_graph": cuda_graph, "host_memory": host_memory,
                  "graph_captures": rt.graph_captures, "split": latency_split(records)}  # fmt: skip
        if per_layer:
            if len(x) > rt.fixed_batch:
                raise DataError(f"profile --per-layer: batch {len(x)} is above the engine's {rt.fixed_batch}")
            times = rt.layer_times(x, runs, warmup)
            result["per_layer"] = layer_profile(times.rows(), report, times.iterations)
    return result


def engine_markdown(result: dict, top: int = 20) -> str:
    from fsanet.export.trt_layers import markdown as layer_table

    name = Path(result["model"]).name
    lines = []
    if result.get("split"):
        s = result["split"]
        lines += [
            f"# fsanet profile: {name}",
            "",
            f"Batch {result['batch']}, {result['runs']} timed runs on {result['executes_on']} "
            f"({result['device']['name']}, sm {result['device']['compute_capability']}); host memory "
            f"{result['host_memory']}" + (", enqueue replayed from a CUDA graph" if result["cuda_graph"] else "") + ".",
            f"Machine: {describe_machine(result['machine'])}." if result.get("machine") else "",
            "",
            "| ms | p50 | p90 | p99 | mean |",
            "|---|---|---|---|---|",
            *(
                f"| {label} | {s[k]['p50']:.4f} | {s[k]['p90']:.4f} | {s[k]['p99']:.4f} | {s[k]['mean']:.4f} |"
                for k, label in SPLIT
            ),  # fmt: skip
            "",
            "Bound by: "
            + (
                ", ".join(s["bound_by"]) + " (at least the GPU compute time, as trtexec warns)"
                if s["bound_by"]
                else "GPU compute"
            ),  # fmt: skip
            "",
        ]
    if result.get("per_layer"):
        p = result["per_layer"]
        lines += [
            f"Per layer (TensorRT's IProfiler, {p['iterations']} runs; a profiled run reports synchronously, so "
            f"compare shares): {p['kernel_ms']:.4f} ms of layers per run.",
            "",
            "| layer type | layers | us per run | share of layer time | MFLOP | GFLOP/s |",
            "|---|---|---|---|---|---|",
            *(
                f"| {r['op_type']} | {r['nodes']} | {r['us_per_run']:.1f} | {r['share']:.1%} | - | - |"
                for r in p["op_types"]
            ),  # fmt: skip
            "",
            f"Slowest {min(top, len(p['nodes']))} layers:",
            "",
            "| layer | type | output shape | us per run |",
            "|---|---|---|---|",
            *(
                f"| {n['node']} | {n['kind']} | {n['output_shapes']} | {n['us_per_run']:.1f} |"
                for n in p["nodes"][:top]
            ),
            "",
        ]
    if result.get("layers"):
        lines.append(layer_table(result["layers"], name))
    elif result.get("split"):
        lines.append("No layer report beside the engine (trtexec: --profilingVerbosity=detailed --exportLayerInfo).\n")
    return "\n".join(lines).rstrip("\n") + "\n"
