"""`fsanet pipeline`, the main job: a fusion checkpoint -> a calibration set -> every target this
machine can build -> one benchmark of all of them against the float ONNX -> the default budget
-> one report folder and a verdict (exit 0 when every limit holds, 1 when one does not).

Defaults need no download: the FSA-Net authors' 300W-LP fusion shipped in the package
(`fsanet/models/`, Apache-2.0, rebuilt by `make packaged-model`), calibrated on synthetic
heads, judged on other synthetic heads. `--weights synthetic` takes the project's own fusion
trained on synthetic heads instead; `--weights FILE.h5 ...` or `model.pt` any other model.
`--real-data`/`--real-faces` judge every file on real faces as well (MAE, drift).

Each stage prints one line (`fsanet.console`); what the libraries print goes to
`<output>/logs/<stage>.log` (`<stage>-2.log`, ... when a file of that name is there already).
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path

from fsanet.console import Console, seconds_text
from fsanet.errors import DataError
from fsanet.packaged import DEFAULT, PACKAGED, packaged

DEFAULT_MODEL = PACKAGED[DEFAULT].path
ACCURACY_LIMITS = ("max_mae", "max_mae_increase", "max_drift", "max_drift_max")  # what real faces can judge


def pipeline_targets() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(every ONNX and TFLite target, the TensorRT ones the pipeline builds where TensorRT
    exists, listed as skipped elsewhere): taken from export.targets, the one list of targets."""
    from fsanet.export.targets import ONNX_TARGETS, TENSORRT_TARGETS, TFLITE_TARGETS

    return ONNX_TARGETS + TFLITE_TARGETS, tuple(t for t in TENSORRT_TARGETS if t != "tensorrt-fp32")


@dataclass
class PipelineConfig:
    output: str = "out/pipeline"
    # a packaged model's name (300wlp, synthetic), the authors' .h5 files (several: a fusion) or one checkpoint
    weights: tuple[str, ...] = ()
    calib: str = "synthetic:300:2"  # calibration faces: a set, a photo folder, or a calib .npz
    calib_count: int = 300
    data: str = "synthetic:500:7"  # labelled faces for MAE
    faces: str | None = None  # unlabelled faces for drift and timing (default: the labelled set)
    real_data: str | None = None  # also: labelled real faces for MAE (no timing)
    real_faces: str | None = None  # also: unlabelled real faces for drift (no timing)
    budget: str = "default"
    runs: int = 1000  # the cap of timed calls per artifact and state; a phase stops sooner once stable
    p50_within: float = 0.03  # the bench stops once every p50's 95% interval is within +-3%
    threads: int = 1
    tensorrt: bool = True
    verbose: bool = False  # the libraries' output live as well as in logs/


def packaged_name(cfg: PipelineConfig) -> str | None:
    """The packaged model the run uses (None: files given)."""
    if not cfg.weights:
        return DEFAULT
    return cfg.weights[0] if len(cfg.weights) == 1 and cfg.weights[0] in PACKAGED else None


def _model_stem(cfg: PipelineConfig) -> str:
    """The name every artifact of the run starts with (`_checkpoint` writes or takes that file)."""
    name = packaged_name(cfg)
    if name:
        return PACKAGED[name].path.stem
    files = [Path(w) for w in cfg.weights]
    return "fsanet-fusion" if len(files) > 1 else files[0].stem


def _check_weights(cfg: PipelineConfig) -> None:
    """--weights names a packaged model, .h5 files (read at import), or one checkpoint that
    loads safely (a pickled one is refused here, before anything is written)."""
    if packaged_name(cfg):
        return
    files = [Path(w) for w in cfg.weights]
    if all(f.suffix == ".h5" for f in files):
        return
    if len(files) == 1 and files[0].suffix == ".pt":
        from fsanet.checkpoint import read_torch_file

        read_torch_file(files[0])
        return
    raise DataError(
        f"--weights {' '.join(cfg.weights)}: give a packaged model ({', '.join(PACKAGED)}), the authors' .h5 "
        "files or one fsanet checkpoint (.pt)"
    )


def _checkpoint(cfg: PipelineConfig, out: Path) -> tuple[Path, str]:
    name = packaged_name(cfg)
    if name:
        model = packaged(name)
        return model.path, model.describe()
    files = [Path(w) for w in cfg.weights]
    if files[0].suffix == ".pt":  # _check_weights took it
        return files[0], files[0].name
    from fsanet.importer import import_keras

    target = out / f"{_model_stem(cfg)}.pt"
    import_keras(files, target)
    return target, "imported from " + ", ".join(f.name for f in files)


def _built_calibration(cfg: PipelineConfig):
    """The --calib calibration set when it is one (loaded and checked now), else None after
    checking that the source opens (a photo folder is only read in its stage)."""
    from fsanet import calib
    from fsanet.data import open_faces

    if cfg.calib.endswith(".npz") and calib.is_calibration_file(cfg.calib):
        return calib.load(cfg.calib)  # else: an official .npz dataset
    if not Path(cfg.calib).is_dir():
        open_faces(cfg.calib)
    return None


def _calibration(cfg: PipelineConfig, built, out: Path, stage) -> Path:
    from fsanet import calib

    if built is not None:
        stage.done(f"{len(built)} faces from {cfg.calib} (built before)")
        return Path(cfg.calib)
    cs = calib.build(cfg.calib, cfg.calib_count, seed=0, progress=stage.update)
    stage.done(f"{len(cs)} faces from {cfg.calib}")
    return cs.save(out / "calib.npz")


def _export_line(rows: list[dict]) -> str:
    built = sum(1 for r in rows if r["file"])
    why = sorted({r["diff"].removeprefix("skipped: ") for r in rows if not r["file"]})
    return f"{built} files" + (f", {len(rows) - built} skipped ({'; '.join(why)})" if why else "")


def run_pipeline(cfg: PipelineConfig) -> dict:
    """Run every stage; returns the summary (also written as summary.json / summary.md).
    Every input is checked before anything is written, and the output folder is held for the
    run (a second run into it is refused)."""
    from fsanet.console import output_lock

    checked = _checked_inputs(cfg)
    with output_lock(cfg.output) as out:
        return _run(cfg, out, *checked)


def _checked_inputs(cfg: PipelineConfig) -> tuple:
    """(budget, labelled faces, real-face sets, the given calibration set or None), each input
    refused now rather than after minutes of work or with an output folder made."""
    from fsanet.benchmarks.budget import check_names, load_budget
    from fsanet.data import open_faces
    from fsanet.export.targets import artifact_name

    budget = load_budget(cfg.budget)
    targets = [t for group in pipeline_targets() for t in group]
    check_names(budget, [artifact_name(_model_stem(cfg), t) for t in targets], cfg.budget)
    _check_weights(cfg)
    data = open_faces(cfg.data)
    if cfg.faces:
        open_faces(cfg.faces)
    real_sets = _open_real(cfg)
    return budget, data, real_sets, _built_calibration(cfg)


def _run(cfg: PipelineConfig, out: Path, budget: dict, data, real_sets: dict, built_calib) -> dict:
    from fsanet.benchmarks.bench import run_bench
    from fsanet.benchmarks.budget import check
    from fsanet.benchmarks.report import recommendation, write_reports
    from fsanet.data import open_faces
    from fsanet.export.targets import export_targets

    targets = [t for group in pipeline_targets() for t in group]
    faces_spec = cfg.faces or cfg.data
    console = Console(out / "logs", cfg.verbose)
    with console.stage("model") as stage:
        checkpoint, model_name = _checkpoint(cfg, out)
        stage.done(Path(checkpoint).name)
    with console.stage("calibration", total=cfg.calib_count, unit="faces") as stage:
        calib_path = _calibration(cfg, built_calib, out, stage)
    trt = cfg.tensorrt and importlib.util.find_spec("tensorrt") is not None
    with console.stage("export", total=len(targets), unit="targets") as stage:
        rows = export_targets(
            checkpoint, targets, out / "artifacts", calib_path, faces_spec, skip_unavailable=not trt,
            progress=lambda target: stage.update(),
        )  # fmt: skip
        stage.done(_export_line(rows))
    built = [r["file"] for r in rows if r["file"]]
    float_onnx = next(r["file"] for r in rows if r["target"] == "onnx")
    real = None
    if real_sets:
        with console.stage("real faces", total=len(built), unit="files") as stage:
            real = _judge_real(built, float_onnx, real_sets, budget, cfg.budget, stage)
    with console.stage("bench") as stage:
        faces = open_faces(faces_spec) if cfg.faces else data
        bench_cfg = _bench_config(cfg)
        result = run_bench(built, data, faces, float_onnx, bench_cfg, progress=stage)
        # with real faces, the budget's accuracy limits judge them (above); the synthetic heads'
        # MAE and drift are reported beside them, not judged twice on faces of another domain
        judged = _limits(budget, accuracy=False) if real else budget
        violations = check(judged, result["artifacts"], cfg.budget)
        paths = write_reports(result, violations, out / "report")
        done = result["config"]["rounds_per_batch"]["1"]
        stage.done(f"{len(result['artifacts'])} files at batch 1, {done['hot']} hot + {done['loop']} in-loop rounds "
                   f"(until every p50 was known to +-{cfg.p50_within:.0%}, or {cfg.runs} calls)")  # fmt: skip
    all_violations = [str(v) for v in violations] + (real["violations"] if real else [])
    summary = {
        "config": asdict(cfg),
        "model": {"checkpoint": str(checkpoint), "from": model_name},
        "calibration": str(calib_path),
        "exports": rows,
        "verdict": "PASS" if not all_violations else "FAIL",
        "violations": all_violations,
        "failed_artifacts": sorted({v.artifact for v in violations} | set(real["failed"] if real else ())),
        "machine": result["machine"],
        "recommendation": recommendation(result, violations),
        "real_faces": real,
        "seconds": dict(console.seconds),
        "logs": [str(p) for p in console.kept],  # the libraries' output of this run (none: they printed nothing)
        "reports": {k: [str(p) for p in v] if isinstance(v, list) else str(v) for k, v in paths.items()},
    }
    _write_summary(out, summary, result)
    return summary


def _bench_config(cfg: PipelineConfig):
    """The bench of the pipeline: batch 1 (the deployment's), short rounds, stopped once every
    p50 is stable (`p50_within`, `runs` the cap) instead of a fixed count, no end-to-end timing
    (`fsanet bench` does batch 32 and end-to-end)."""
    from fsanet.benchmarks.bench import BenchConfig

    return BenchConfig(
        batches=(1,), runs=cfg.runs, warmup=20, round_runs=5, hot_round_runs=20, threads=cfg.threads,
        p50_within=cfg.p50_within, end_to_end=False, peak_gflops="measure",
    )  # fmt: skip


def _limits(budget: dict, accuracy: bool) -> dict:
    """The budget's accuracy limits (`ACCURACY_LIMITS`), or all its other limits."""
    return {s: {k: v for k, v in keys.items() if (k in ACCURACY_LIMITS) == accuracy} for s, keys in budget.items()}


def _open_real(cfg: PipelineConfig) -> dict:
    """The real-face sets asked for: labelled ('data', for MAE) and unlabelled ('faces', drift)."""
    from fsanet.data import open_faces

    sets = {}
    if cfg.real_data:
        sets["data"] = open_faces(cfg.real_data)
        if sets["data"].poses is None:
            raise DataError(f"--real-data {cfg.real_data}: has no pose labels; give a labelled set (AFLW2000, .npz)")
    if cfg.real_faces:
        sets["faces"] = open_faces(cfg.real_faces)
    return sets


def _judge_real(built: list[str], float_onnx: str, sets: dict, budget: dict, source: str, stage) -> dict:
    """MAE on the labelled real faces and drift against the float ONNX on the unlabelled ones,
    for every built file, judged by the budget's accuracy limits (no timing)."""
    from fsanet import runtimes
    from fsanet.accuracy import drift, mae
    from fsanet.benchmarks.budget import check
    from fsanet.runtimes.estimator import PoseEstimator, non_finite_faces

    crops = {k: s.images() for k, s in sets.items()}
    angles: dict[str, dict] = {}
    for path in built:
        with PoseEstimator(runtimes.open(path, threads=1), check_finite=False) as est:
            angles[Path(path).name] = {k: est.predict(c) for k, c in crops.items()}
        stage.update()
    ref = Path(float_onnx).name
    results = {}
    for name, a in angles.items():
        r = {"is_reference": name == ref, "non_finite": {"faces": sum(map(non_finite_faces, a.values())),
                                                         "of": sum(map(len, a.values()))}}  # fmt: skip
        if "data" in a:
            r["mae"] = mae(a["data"], sets["data"].poses)
            r["mae_increase"] = r["mae"]["mean"] - mae(angles[ref]["data"], sets["data"].poses)["mean"]
        if "faces" in a:
            r["drift"] = drift(a["faces"], angles[ref]["faces"])
        results[name] = r
    violations = check(_limits(budget, accuracy=True), results, source)
    what = {"data": "MAE on {} labelled faces", "faces": "drift on {} faces"}
    stage.done(", ".join(what[k].format(len(s)) for k, s in sets.items()) + f", {len(built)} files")
    return {
        "data": getattr(sets.get("data"), "source", None),
        "faces": getattr(sets.get("faces"), "source", None),
        "artifacts": results,
        "violations": [f"real faces: {v}" for v in violations],
        "failed": sorted({v.artifact for v in violations}),
    }


def verdict_table(summary: dict, result: dict) -> str:
    """One row per target: file size, p50/p99 at batch 1, MAE, drift, and its budget verdict;
    with real faces, their MAE and drift too."""
    bad = set(summary["failed_artifacts"])
    real = (summary.get("real_faces") or {}).get("artifacts")
    head = "| target | size MB | p50 ms | p99 ms | MAE mean | drift mean / max |"
    head += " real MAE | real drift mean / max |" if real else ""
    lines = [head + " verdict |", "|---" * (head.count("|")) + "|"]
    by_file = {Path(a["path"]).name: (name, a) for name, a in result["artifacts"].items()}
    for row in summary["exports"]:
        if not row["file"]:
            lines.append(f"| {row['target']} |" + " - |" * (head.count("|") - 2) + f" {row['diff']} |")
            continue
        name, a = by_file[Path(row["file"]).name]
        c = a["latency"]["compute"]["1"]
        cells = [row["target"], f"{a['size_mb']:.2f}", f"{c['p50_ms']:.3f}", f"{c['p99_ms']:.3f}"]
        cells += _accuracy_cells(a)
        if real:
            cells += _accuracy_cells(real[name])
        cells.append("FAIL" if name in bad else "pass")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _accuracy_cells(a: dict) -> list[str]:
    mae = a.get("mae") or {}
    d = a.get("drift") or {}
    drift = "reference" if a["is_reference"] else f"{d.get('mean', float('nan')):.3f} / {d.get('max', 0):.2f}"
    return [f"{mae.get('mean', float('nan')):.2f}", drift]


def judged_on(summary: dict) -> str:
    """Which faces the MAE and drift columns come from."""
    cfg = summary["config"]
    text = f"MAE on {cfg['data']}, drift against the float ONNX on {cfg['faces'] or cfg['data']}"
    real = summary.get("real_faces")
    if real:
        text += (
            f"; real faces: MAE on {real['data'] or '-'}, drift on {real['faces'] or '-'} (the budget's accuracy "
            "limits judge these; the synthetic heads' MAE and drift are reported)"
        )
    return text


def stage_times(summary: dict) -> str:
    seconds = summary["seconds"]
    parts = ", ".join(f"{k} {seconds_text(v)}" for k, v in seconds.items())
    return f"stage times: {parts}; total {seconds_text(sum(seconds.values()))}"


def logs_text(summary: dict, out: Path | None = None) -> str:
    """Where this run's library output is: the logs it kept (relative to `out` when given)."""
    logs = [Path(p) for p in summary.get("logs") or ()]
    if not logs:
        return "The libraries printed nothing (no log kept)."
    names = [str(p.relative_to(out)) if out is not None and p.is_relative_to(out) else str(p) for p in logs]
    return f"Library output: {', '.join(names)}."


def _write_summary(out: Path, summary: dict, result: dict) -> None:
    from fsanet.files import json_text, write_text
    from fsanet.machine import describe as describe_machine

    table = verdict_table(summary, result)
    summary["table"] = table
    cfg = summary["config"]
    md = [
        "# fsanet pipeline",
        "",
        f"Model: {summary['model']['from']} ({summary['model']['checkpoint']}). Calibration: {cfg['calib']} "
        f"({summary['calibration']}). Judged: {judged_on(summary)}. "
        f"ONNX Runtime / LiteRT on the CPU, {cfg['threads']} thread(s), batch 1.",
        f"Machine: {describe_machine(summary['machine'])}.",
        "",
        table,
        "",
        f"Verdict ({cfg['budget']} budget): **{summary['verdict']}**",
        *(f"- {v}" for v in summary["violations"]),
        "",
        *summary["recommendation"],
        "",
        "Full benchmark (both states, memory, ratios): [report/report.md](report/report.md). "
        f"{stage_times(summary).capitalize()}. {logs_text(summary, out)}",
        "",
        "![latency](report/latency.png) ![errors](report/errors.png)",
        "",
    ]
    write_text(out / "summary.md", "\n".join(md))
    write_text(out / "summary.json", json_text(summary, default=str))
