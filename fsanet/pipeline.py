"""`fsanet pipeline`, the main job: a fusion checkpoint -> a calibration set -> every target this
machine can build -> one benchmark of all of them against the float ONNX -> the default budget
-> one report folder and a verdict (exit 0 when every limit holds, 1 when one does not).

Defaults need no download: the project's own fusion trained on synthetic heads
(`fsanet/models/`, rebuilt by `make default-model`), calibrated on synthetic heads, judged on
other synthetic heads (seeds never used in training). Real data comes in with `--weights`,
`--calib`, `--data` and `--faces`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fsanet.errors import DataError

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "fsanet-fusion-synthetic.pt"


def pipeline_targets() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(every ONNX and TFLite target, the TensorRT ones the pipeline builds where TensorRT
    exists, listed as skipped elsewhere): taken from export.targets, the one list of targets."""
    from fsanet.export.targets import ONNX_TARGETS, TENSORRT_TARGETS, TFLITE_TARGETS

    return ONNX_TARGETS + TFLITE_TARGETS, tuple(t for t in TENSORRT_TARGETS if t != "tensorrt-fp32")


@dataclass
class PipelineConfig:
    output: str = "out/pipeline"
    weights: tuple[str, ...] = ()  # the authors' .h5 files (several: a fusion) or one checkpoint
    calib: str = "synthetic:300:2"  # calibration faces: a set, a photo folder, or a calib .npz
    calib_count: int = 300
    data: str = "synthetic:500:7"  # labelled faces for MAE
    faces: str | None = None  # unlabelled faces for drift and timing (default: the labelled set)
    budget: str = "default"
    runs: int = 200
    threads: int = 1
    tensorrt: bool = True


def _model_stem(cfg: PipelineConfig) -> str:
    """The name every artifact of the run starts with (`_checkpoint` writes or takes that file)."""
    files = [Path(w) for w in cfg.weights]
    if not files:
        return DEFAULT_MODEL.stem
    return "fsanet-fusion" if len(files) > 1 else files[0].stem


def _checkpoint(cfg: PipelineConfig, out: Path) -> tuple[Path, str]:
    if not cfg.weights:
        if not DEFAULT_MODEL.is_file():
            raise DataError(f"{DEFAULT_MODEL}: the default model is missing; rebuild it with `make default-model`")
        return DEFAULT_MODEL, "the project's fusion trained on synthetic heads"
    files = [Path(w) for w in cfg.weights]
    if all(f.suffix == ".h5" for f in files):
        from fsanet.importer import import_keras

        target = out / f"{_model_stem(cfg)}.pt"
        import_keras(files, target)
        return target, ", ".join(f.name for f in files)
    if len(files) == 1 and files[0].suffix == ".pt":
        return files[0], files[0].name
    raise DataError(f"--weights {' '.join(cfg.weights)}: give the authors' .h5 files or one fsanet checkpoint (.pt)")


def _calibration(cfg: PipelineConfig, out: Path) -> Path:
    from fsanet import calib

    if cfg.calib.endswith(".npz") and Path(cfg.calib).is_file():
        try:
            calib.load(cfg.calib)  # a calibration set already (else: an official .npz dataset)
            return Path(cfg.calib)
        except DataError:
            pass
    cs = calib.build(cfg.calib, cfg.calib_count, seed=0)
    return cs.save(out / "calib.npz")


def run_pipeline(cfg: PipelineConfig) -> dict:
    """Run every stage; returns the summary (also written as summary.json / summary.md)."""
    import importlib.util

    from fsanet.benchmarks.bench import BenchConfig, run_bench
    from fsanet.benchmarks.budget import check, check_names, load_budget
    from fsanet.benchmarks.report import recommendation, write_reports
    from fsanet.data import open_faces
    from fsanet.export.targets import artifact_name, export_targets

    budget = load_budget(cfg.budget)  # a bad budget file, or one naming no artifact, fails before the work
    targets = [t for group in pipeline_targets() for t in group]
    check_names(budget, [artifact_name(_model_stem(cfg), t) for t in targets], cfg.budget)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    data = open_faces(cfg.data)
    faces_spec = cfg.faces or cfg.data
    started = time.perf_counter()
    stages = {}
    checkpoint, model_name = _checkpoint(cfg, out)
    stages["model"] = time.perf_counter() - started
    calib_path = _calibration(cfg, out)
    stages["calibration"] = time.perf_counter() - started - sum(stages.values())
    trt = cfg.tensorrt and importlib.util.find_spec("tensorrt") is not None
    rows = export_targets(checkpoint, targets, out / "artifacts", calib_path, faces_spec, skip_unavailable=not trt)
    stages["export"] = time.perf_counter() - started - sum(stages.values())
    built = [r["file"] for r in rows if r["file"]]
    float_onnx = next(r["file"] for r in rows if r["target"] == "onnx")
    faces = open_faces(faces_spec) if cfg.faces else data
    bench_cfg = BenchConfig(runs=cfg.runs, warmup=max(10, cfg.runs // 10), threads=cfg.threads, peak_gflops="measure")
    result = run_bench(built, data, faces, float_onnx, bench_cfg)
    violations = check(budget, result["artifacts"], cfg.budget)
    paths = write_reports(result, violations, out / "report")
    stages["bench"] = time.perf_counter() - started - sum(stages.values())
    summary = {
        "config": asdict(cfg),
        "model": {"checkpoint": str(checkpoint), "from": model_name},
        "calibration": str(calib_path),
        "exports": rows,
        "verdict": "PASS" if not violations else "FAIL",
        "violations": [str(v) for v in violations],
        "failed_artifacts": sorted({v.artifact for v in violations}),
        "machine": result["machine"],
        "recommendation": recommendation(result, violations),
        "seconds": stages,
        "reports": {k: [str(p) for p in v] if isinstance(v, list) else str(v) for k, v in paths.items()},
    }
    _write_summary(out, summary, result)
    return summary


def verdict_table(summary: dict, result: dict) -> str:
    """One row per target: file size, p50/p99 at batch 1, MAE, drift, and its budget verdict."""
    bad = set(summary["failed_artifacts"])
    lines = [
        "| target | size MB | p50 ms | p99 ms | MAE mean | drift mean / max | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    by_file = {Path(a["path"]).name: (name, a) for name, a in result["artifacts"].items()}
    for row in summary["exports"]:
        if not row["file"]:
            lines.append(f"| {row['target']} | - | - | - | - | - | {row['diff']} |")
            continue
        name, a = by_file[Path(row["file"]).name]
        c = a["latency"]["compute"]["1"]
        mae = a.get("mae") or {}
        d = a.get("drift") or {}
        drift = "reference" if a["is_reference"] else f"{d.get('mean', float('nan')):.3f} / {d.get('max', 0):.2f}"
        verdict = "FAIL" if name in bad else "pass"
        lines.append(
            f"| {row['target']} | {a['size_mb']:.2f} | {c['p50_ms']:.3f} | {c['p99_ms']:.3f} "
            f"| {mae.get('mean', float('nan')):.2f} | {drift} | {verdict} |"
        )
    return "\n".join(lines)


def _write_summary(out: Path, summary: dict, result: dict) -> None:
    from fsanet.benchmarks.machine import describe as describe_machine
    from fsanet.files import json_text, write_text

    table = verdict_table(summary, result)
    summary["table"] = table
    cfg = summary["config"]
    md = [
        "# fsanet pipeline",
        "",
        f"Model: {summary['model']['from']} ({summary['model']['checkpoint']}). Calibration: {cfg['calib']} "
        f"({summary['calibration']}). MAE on {cfg['data']}; drift against the float ONNX on "
        f"{cfg['faces'] or cfg['data']}. ONNX Runtime / LiteRT on the CPU, {cfg['threads']} thread(s), batch 1.",
        f"Machine: {describe_machine(summary['machine'])}.",
        "",
        table,
        "",
        f"Verdict ({cfg['budget']} budget): **{summary['verdict']}**",
        *(f"- {v}" for v in summary["violations"]),
        "",
        *summary["recommendation"],
        "",
        "Full benchmark (batch 32, end-to-end, memory, ratios): [report/report.md](report/report.md). "
        f"Stage times (s): {', '.join(f'{k} {v:.0f}' for k, v in summary['seconds'].items())}.",
        "",
        "![latency](report/latency.png) ![errors](report/errors.png)",
        "",
    ]
    write_text(out / "summary.md", "\n".join(md))
    write_text(out / "summary.json", json_text(summary, default=str))
