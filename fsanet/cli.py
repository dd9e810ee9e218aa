"""The single `fsanet` command; each subcommand imports its stage only when it runs.

Exit codes: 0 success, 1 a budget limit violated (and nothing else), 2 bad input or usage,
3 an unexpected internal error (its traceback goes to a file; `--debug` prints it).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import tempfile
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path

from fsanet import __version__
from fsanet.argtypes import batch, count, float_pair, integer, integer_list, milestones, positive_float
from fsanet.errors import DataError, FsanetError, Terminated
from fsanet.limits import MAX_BATCH, MAX_GOLDEN_FACES
from fsanet.packaged import DEFAULT_HELP
from fsanet.paths import check_inputs_exist, check_output_dir, check_output_file


def _import_keras(args) -> int:
    check_output_file(args.output, args.files)
    check_inputs_exist(args.files, "weights file")
    from fsanet.importer import import_keras
    from fsanet.keras_weights import stored_values
    from fsanet.model import variant_name

    model = import_keras(args.files, args.output)
    members = getattr(model, "members", [model])
    for f, m in zip(args.files, members, strict=True):
        print(f"{f}: {variant_name(m.config)}, {stored_values(m):,} values")
    kind = f"fusion of {len(members)}" if len(members) > 1 else "model"
    print(f"wrote {args.output} ({kind}, {stored_values(model):,} values)")
    return 0


def _eval(args) -> int:
    from fsanet.packaged import chosen_model

    model = chosen_model(args.model_arg, args.model)
    check_output_file(args.json, [model, args.data], "--json")
    check_inputs_exist([model])
    from fsanet.evaluate import evaluate, format_result

    print(format_result(evaluate(model, args.data, args.json)))
    return 0


def _console(args, logs):
    """One line per stage on the console; the libraries' output in `logs` (live too with -v)."""
    from fsanet.console import Console

    return Console(logs, verbose=getattr(args, "verbose", False))


def _holding(folder, option: str = "-o", name: str | None = None):
    """This run's hold on its output folder (a second run into it exits 2 at once); see
    fsanet.console.output_lock."""
    from fsanet.console import LOCK_NAME, output_lock

    return output_lock(folder, option, name or LOCK_NAME)


def _export(args) -> int:
    check_output_dir(args.output, [args.model, args.calib, args.verify])
    check_inputs_exist([args.model], "checkpoint")
    check_inputs_exist([args.calib, args.verify], "calibration or verification set")
    from fsanet.export.targets import check_options, export_targets

    targets = [t.strip() for t in args.to.split(",") if t.strip()]
    float_ops = None if args.int8_float_ops is None else tuple(filter(None, args.int8_float_ops.split(",")))
    float_layers = tuple(filter(None, (args.int8_float_layers or "").split(",")))
    check_options(targets, args.verify, args.int8_max_drift, float_ops, float_layers, args.int8_objective,
                  args.candidates, args.dla_core, not args.no_gpu_fallback, args.int8_float_parts)  # fmt: skip
    with (
        _holding(args.output),
        _console(args, Path(args.output, "logs")).stage("export", total=len(targets), unit="targets") as stage,
    ):
        rows = export_targets(
            args.model,
            targets,
            args.output,
            calib_path=args.calib,
            verify_path=args.verify,
            int8_max_drift=args.int8_max_drift,
            int8_float_ops=float_ops,
            int8_float_layers=float_layers,
            int8_objective=args.int8_objective,
            candidates=args.candidates,
            skip_unavailable=args.skip_unavailable,
            dla_core=args.dla_core,
            gpu_fallback=not args.no_gpu_fallback,
            int8_float=args.int8_float_parts,
            progress=lambda target: stage.update(),
        )
        stage.done(f"{sum(1 for r in rows if r['file'])} of {len(rows)} targets built")
    print("| target | file | size MB | vs float size | verified on | max / mean difference, degrees |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        size = f"{r['size_mb']:.2f} | {r['size_ratio']:.2f}" if r["file"] else "- | -"
        print(f"| {r['target']} | {r['file'] or '-'} | {size} | {r['faces']} | {r['diff']} |")
    return 0


def _predict(args) -> int:
    import json

    from fsanet.packaged import chosen_model, is_model_file

    images = list(args.images)
    given = images.pop(0) if args.model is None and len(images) > 1 and is_model_file(images[0]) else None
    model = chosen_model(given, args.model)
    check_inputs_exist([model])
    from fsanet import runtimes
    from fsanet.predict import predict_paths

    with runtimes.open(model, threads=args.threads) as rt:
        rows = predict_paths(rt, images, args.detector)
    for row in rows:
        if args.json:
            print(json.dumps(row, allow_nan=False))
        elif row["angles"] is None:
            print(f"{row['image']}  {row['crop']}")
        else:
            y, p, r = row["angles"]
            print(f"{row['image']}  face {row['face']} ({row['crop']}): yaw {y:7.2f}  pitch {p:7.2f}  roll {r:7.2f}")
    return 0


def _demo(args) -> int:
    from fsanet.packaged import chosen_model

    args.model = chosen_model(None, args.model)
    inputs = [args.model, *(s for s in args.sources if s != "0")]
    if args.output and Path(args.output).suffix:
        check_output_file(args.output, inputs)
    else:
        check_output_dir(args.output, inputs)
    from fsanet.demo import run_demo

    summary = run_demo(
        args.sources,
        args.model,
        args.output,
        detector=args.detector,
        show=args.show,
        max_frames=args.max_frames,
        columns=args.montage,
        landmarks=args.landmarks,
        threads=args.threads,
    )
    print("\n".join(summary.lines + [summary.describe()]))
    return 0


def _profile(args) -> int:
    from fsanet.benchmarks.profile import markdown, profile_onnx, write_reports
    from fsanet.data import open_faces

    engine_only = args.per_layer or args.cuda_graph or args.host_memory != "pinned"
    if Path(args.model).suffix in (".engine", ".plan"):  # TensorRT: the layer report, and timings with faces
        from fsanet.benchmarks.profile import profile_engine

        check_inputs_exist([args.model])
        crops = open_faces(args.faces or args.data).images() if (args.faces or args.data) else None
        options = {"per_layer": args.per_layer, "cuda_graph": args.cuda_graph, "host_memory": args.host_memory}
        print(profile_engine(args.model, args.output, crops, batch=args.batch, runs=args.runs, warmup=args.warmup,
                             top=args.top, **options))  # fmt: skip
        return 0
    if engine_only:
        raise DataError("profile: --per-layer, --cuda-graph and --host-memory apply to TensorRT engines (.engine, "
                        ".plan); an ONNX profile is always per operator")  # fmt: skip
    if not (args.faces or args.data):
        raise DataError("profile: needs faces to run on (--faces DIR or --data DIR)")
    check_output_dir(args.output, [args.model, args.faces, args.data])
    check_inputs_exist([args.model])
    crops = open_faces(args.faces or args.data).images()
    result = profile_onnx(
        args.model,
        crops,
        batch=args.batch,
        threads=args.threads,
        runs=args.runs,
        warmup=args.warmup,
        provider=args.provider,
        denormals_as_zero=not args.keep_denormals,
    )
    paths = write_reports(result, args.output, args.top)
    print(markdown(result, args.top))
    print(f"reports: {paths['markdown']}, {paths['json']}, {paths['plot']}")
    return 0


def _debug(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from fsanet.benchmarks.layer_drift import debug_onnx
    from fsanet.benchmarks.layer_drift_report import summary_lines, write_reports
    from fsanet.data import open_faces

    check_output_dir(args.output, [args.model, args.reference, args.faces])
    check_inputs_exist([args.model, args.reference])
    for path, option in ((args.model, "INT8_ARTIFACT"), (args.reference, "--reference")):
        if Path(path).suffix.lower() != ".onnx":
            raise DataError(f"debug: {option} {path} is not an ONNX file; layer-wise drift reads ONNX Q/DQ graphs")
    faces = open_faces(args.faces)
    if len(faces) == 0:
        raise DataError(f"debug: --faces {args.faces}: no faces found")
    crops = np.stack([faces.load(i) for i in range(min(args.count, len(faces)))])  # the first N only
    with tqdm(desc="debug", unit="layer", disable=None) as bar:
        result = debug_onnx(args.model, args.reference, crops, args.alone_faces, bar, args.max_drift)
    paths = write_reports(result, args.output)
    print("\n".join(summary_lines(result)))
    print(f"reports: {paths['markdown']}, {paths['json']}, {paths['plot']}")
    return 0


def _peak_gflops(text: str) -> float | str:
    if text == "measure":
        return text
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"a positive finite number of GFLOP/s or 'measure', not {text!r}") from None


def _bench(args) -> int:
    from fsanet.benchmarks.bench import BenchConfig, artifact_names, run_bench
    from fsanet.benchmarks.budget import check, check_names, load_budget
    from fsanet.benchmarks.footprint import cache_lines
    from fsanet.benchmarks.report import (
        instruction_lines,
        markdown_table,
        ratio_matrix,
        recommendation,
        verdict_lines,
        write_reports,
    )
    from fsanet.data import open_faces

    check_output_dir(args.output, [*args.models, args.reference, args.data, args.faces, args.budget])
    check_inputs_exist([*args.models, args.reference])
    budget = load_budget(args.budget) if args.budget else None
    if budget:  # a section naming no artifact fails now, not after the whole benchmark
        check_names(budget, artifact_names(args.models, args.reference), args.budget)
    if not (args.data or args.faces):
        raise DataError("bench: needs faces to run on (--faces DIR or --data DIR)")
    data = open_faces(args.data) if args.data else None
    faces = open_faces(args.faces) if args.faces else None
    cfg = BenchConfig(
        batches=args.batch,
        threads=args.threads,
        runs=args.runs,
        warmup=args.warmup,
        provider=args.provider,
        device=args.device,
        memory=not args.no_memory,
        peak_gflops=args.peak_gflops,
        denormals_as_zero=not args.keep_denormals,
        instructions=args.instructions,
        processes=args.processes,
        p50_within=args.p50_within,
    )
    with _holding(args.output), _console(args, Path(args.output, "logs")).stage("bench") as stage:
        result = run_bench(args.models, data, faces, args.reference, cfg, progress=stage)
        violations = check(budget, result["artifacts"], args.budget) if budget else None
        paths = write_reports(result, violations, args.output)
        batches = ", ".join(map(str, cfg.batches))
        stage.done(f"{len(result['artifacts'])} files, {cfg.runs} runs each at batch {batches}")
    print(markdown_table(result))
    print("\n".join(instruction_lines(result) + cache_lines(result)))
    print(ratio_matrix(result, str(cfg.batches[0])))
    print(ratio_matrix(result, str(cfg.batches[0]), "loop"))
    print("\n".join(verdict_lines(violations, result) + recommendation(result, violations)))
    print(f"reports: {paths['markdown']}, {paths['json']}, {', '.join(str(p) for p in paths['plots'])}")
    return 1 if violations else 0


def _calib(args) -> int:
    check_output_file(args.output, [args.source, args.detector])
    from fsanet import calib

    output = Path(args.output).resolve()
    with (  # held per output file: builds of other files into the folder may run beside it
        _holding(output.parent, name=f".{output.name}.lock"),
        _console(args, output.parent / "logs").stage("calibration", total=args.count, unit="faces") as stage,
    ):
        cs = calib.build(args.source, args.count, args.seed, args.bins, args.detector, progress=stage.update)
        cs.save(args.output)
        stage.done(f"{len(cs)} faces -> {args.output}")
    m = cs.manifest
    dropped = "".join(f", {n} dropped ({why})" for why, n in m["dropped"].items())
    print(f"wrote {args.output}: {m['count']} faces from {m['source']} ({m['sampling']}, seed {m['seed']}{dropped})")
    print(f"sha256 {m['sha256']}")
    return 0


def _train(args) -> int:
    check_output_dir(args.output, [args.data, *(args.val or ()), args.init, args.calib])
    check_inputs_exist([args.init], "checkpoint")
    from fsanet.train import TrainConfig, train

    cfg = TrainConfig(
        data=args.data,
        output=args.output,
        val=tuple(args.val or ()),
        protocol=args.protocol,
        variant=args.variant,
        init=args.init,
        epochs=args.epochs,
        lr=args.lr,  # None: TrainConfig's rule (the paper's rate, or the QAT rate with --qat)
        milestones=args.milestones,
        batch=args.batch,
        seed=args.seed,
        augment=not args.no_augment,
        scale_range=args.scale,
        limit=args.limit,
        val_limit=args.val_limit,
        workers=args.workers,
        device=args.device,
        amp=not args.no_amp,
        resume=args.resume,
        stop_after=args.stop_after,
        qat=args.qat,
        calib=args.calib,
        distill=args.distill,
    )
    result = train(cfg)
    b = result["best"]
    if result["history"]:
        print(f"best: epoch {b['epoch']}, {b['val']} mean MAE {b['mae']:.2f} -> {result['best_checkpoint']}")
    return 0


def _fuse(args) -> int:
    check_output_file(args.output, args.members)
    check_inputs_exist(args.members, "checkpoint")
    from fsanet.train.fuse import fuse, is_paper_fusion

    _, sources = fuse(args.members, args.output)
    for s in sources:
        print(f"{s['file']}: {s['variant']}")
    paper = " (the paper's FSA-Caps-Fusion members)" if is_paper_fusion(sources) else ""
    print(f"wrote {args.output} (fusion of {len(sources)}{paper})")
    return 0


def _synth(args) -> int:
    check_output_file(args.output)
    check_output_file(args.sheet, [args.output], "--sheet")
    from fsanet.data.synthetic import contact_sheet, synthetic_faces, write_npz

    faces = synthetic_faces(args.count, args.seed, size=args.size)
    write_npz(faces, args.output, args.workers)
    print(f"wrote {args.output}: {len(faces)} synthetic heads, seed {args.seed} ('image' (N,64,64,3) BGR, 'pose')")
    if args.sheet:
        print(f"wrote {contact_sheet(faces, args.sheet)} (first {min(64, len(faces))} crops with their axes)")
    return 0


def _pipeline(args) -> int:
    from fsanet.packaged import PACKAGED

    files = [w for w in args.weights or () if not (len(args.weights) == 1 and w in PACKAGED)]
    check_output_dir(args.output, [*files, args.calib, args.data, args.faces, args.real_data, args.real_faces])
    check_inputs_exist(files, "weights file")
    from fsanet.pipeline import PipelineConfig, judged_on, run_pipeline, stage_times

    cfg = PipelineConfig(
        output=args.output,
        weights=tuple(args.weights or ()),
        calib=args.calib,
        calib_count=args.calib_count,
        data=args.data,
        faces=args.faces,
        real_data=args.real_data,
        real_faces=args.real_faces,
        budget=args.budget,
        runs=args.runs,
        p50_within=args.p50_within,
        threads=args.threads,
        tensorrt=not args.no_tensorrt,
        verbose=getattr(args, "verbose", False),
    )
    summary = run_pipeline(cfg)
    print(f"model: {summary['model']['from']}")
    print(f"calibrated on {cfg.calib}; {judged_on(summary)}")
    print(summary["table"])
    print(f"verdict ({cfg.budget} budget): {summary['verdict']}")
    for v in summary["violations"]:
        print(f"  - {v}")
    print("\n".join(summary["recommendation"]))
    print(stage_times(summary))
    logs = ", ".join(summary["logs"]) or "none (the libraries printed nothing)"
    print(f"report: {args.output}/summary.md; library output: {logs}")
    return 0 if summary["verdict"] == "PASS" else 1


def _arm(args) -> int:
    check_output_dir(args.output, [*args.artifacts, args.reference, args.faces])
    check_inputs_exist([*args.artifacts, args.reference])
    from fsanet.benchmarks.arm_drift import ArmConfig, run_arm

    cfg = ArmConfig(
        artifacts=args.artifacts,
        reference=args.reference,
        faces=args.faces,
        count=args.count,
        cpus=tuple(c.strip() for c in args.cpu.split(",") if c.strip()),
        budget=args.budget,
        output=args.output,
        cache=args.cache,
        jobs=args.jobs,
    )
    report = run_arm(cfg)
    print(Path(args.output, "arm.md").read_text().split("\n\n## ")[0])
    return 0 if report["verdict"] == "PASS" else 1


def _bundle(args) -> int:
    from fsanet.kit.bundle import make_bundle, summary

    check_inputs_exist(args.artifacts)
    manifest = make_bundle(
        args.artifacts,
        args.output,
        faces=args.faces,
        count=args.count,
        seed=args.seed,
        budget=args.budget,
        reference=args.reference,
        calib=args.calib,
        tar=args.tar,
        wheel=args.wheel,
    )
    print("\n".join(summary(manifest, Path(args.output))))
    if args.tar:
        print(f"wrote {Path(args.output).with_name(Path(args.output).name + '.tar.gz')}")
    return 0


def _check(args) -> int:
    from fsanet.kit.check import CheckConfig

    build = ()
    if args.build:
        from fsanet.kit.engines import parse_targets

        build = parse_targets(args.build)
    latency = not args.no_latency
    cfg = CheckConfig(runs=args.runs, warmup=args.warmup, threads=args.threads, latency=latency, build=build)
    if args.remote:
        return _check_remote(args)
    from fsanet.kit.check import exit_code, run_check
    from fsanet.kit.report import console

    result = run_check(args.bundle, args.output, cfg)
    out = Path(args.output) if args.output else Path(args.bundle) / "check"
    print("\n".join(console(result, out)))
    return exit_code(result)


def _check_remote(args) -> int:
    from fsanet.kit.remote import Remote, check_remote

    folder = Path(args.bundle)
    remote = Remote.parse(args.remote, folder.resolve().name, args.remote_python, args.ssh_option or ())
    output = Path(args.output) if args.output else folder / f"check-{remote.label}"
    check_output_dir(output, [folder])
    forwarded = ["--runs", str(args.runs), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    forwarded += ["--no-latency"] if args.no_latency else []
    forwarded += ["--build", args.build] if args.build else []
    code, files = check_remote(folder, remote, output, forwarded)
    print(f"fetched from {remote.host}: " + ", ".join(str(output / f) for f in files))
    return code


def _variants(args) -> int:
    from fsanet.model import FUSION_MEMBERS, VARIANTS

    for name, cfg in VARIANTS.items():
        print(f"{name:22s} {cfg}")
    print(f"fusion = mean of {', '.join(FUSION_MEMBERS)}")
    return 0


def _defaults(config_class) -> dict:
    """A config dataclass's field defaults: the one place they are written; argparse reads them."""
    out = {}
    for f in dataclasses.fields(config_class):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def build_parser() -> argparse.ArgumentParser:
    from fsanet.benchmarks.bench import BenchConfig
    from fsanet.pipeline import PipelineConfig
    from fsanet.train.config import TrainConfig

    B, P, T = _defaults(BenchConfig), _defaults(PipelineConfig), _defaults(TrainConfig)
    p = argparse.ArgumentParser(prog="fsanet", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"fsanet-edge {__version__}")
    p.add_argument("--debug", action="store_true", help="print the full traceback of an error")
    p.add_argument("-v", "--verbose", action="store_true", help="show the libraries' output live (else: OUT/logs/)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("import-keras", help="the authors' .h5 weights -> checkpoint (several files: fusion)")
    s.add_argument("files", nargs="+", help="Keras .h5 files of the released models")
    s.add_argument("-o", "--output", required=True, help="checkpoint to write (.pt)")
    s.set_defaults(run=_import_keras)

    s = sub.add_parser("export", help="checkpoint -> deployable files with manifests")
    s.add_argument("model", help="checkpoint (.pt)")
    s.add_argument(
        "--to",
        default="onnx",
        help="comma-separated targets: onnx, onnx-fp16, onnx-int8, tflite, tflite-fp16, tflite-dynamic, "
        "tflite-int8, tensorrt-fp32, tensorrt-fp16, tensorrt-int8",
    )
    s.add_argument(
        "--skip-unavailable",
        action="store_true",
        help="skip TensorRT targets on a machine without TensorRT (listed as skipped) instead of failing",
    )
    s.add_argument("--calib", help="calibration set (.npz from `fsanet calib build`), needed for INT8")
    s.add_argument(
        "--faces",
        "--verify",  # its first name; kept so that existing scripts run
        dest="verify",
        help="real faces to verify every file on (default: random crops / the calibration set), as in bench",
    )
    s.add_argument(
        "--int8-max-drift",
        type=positive_float,
        help="accuracy-controlled INT8 (ONNX and TFLite): keep op types in float until "
        "the mean drift (degrees) on the --verify faces holds",
    )
    s.add_argument("--int8-float-ops", help="op types to keep in float for INT8 (comma-separated; '' = plain PTQ)")
    s.add_argument(
        "--int8-float-layers", help="ONNX INT8: node names to keep float (comma-separated; fsanet debug --max-drift)"
    )
    s.add_argument(
        "--int8-objective",
        choices=("latency", "size"),
        help="INT8 ONNX/TFLite with --int8-max-drift: build candidate scopes (which convolutions, the debug "
        "recipe, the matrices as int8 weights, float weights or int8 products), time those within the budget "
        "here, keep the fastest (or smallest); <file>.scopes.md holds the Pareto table",
    )
    s.add_argument(
        "--candidates",
        type=integer(1),
        default=1,
        metavar="K",
        help="with --int8-objective: also write the next best K-1 candidates (<stem>-int8-2.onnx, ...) for a device "
        "kit, so that `fsanet check` picks the fastest on the device",
    )
    s.add_argument(
        "--dla-core",
        type=integer(0),
        metavar="N",
        help="TensorRT engines on DLA core N (Xavier, Orin AGX/NX), batch 1, other layers on the GPU",
    )
    s.add_argument(
        "--no-gpu-fallback", action="store_true", help="with --dla-core: fail if a layer cannot run on the DLA"
    )
    s.add_argument(
        "--int8-float-parts",
        choices=("fp32", "fp16"),
        help="tensorrt-int8 on TensorRT >= 10 (strongly typed): the Q/DQ file's float parts in fp32 (default) or "
        "fp16 (an opset-19 copy with float16 scales, as implicit INT8 runs them)",
    )
    s.add_argument("-o", "--output", required=True, help="output folder")
    s.set_defaults(run=_export)

    s = sub.add_parser("calib", help="calibration sets for quantization")
    calib_sub = s.add_subparsers(dest="calib_command", required=True)
    c = calib_sub.add_parser("build", help="draw N faces from a dataset or photo folder into calib.npz")
    c.add_argument("source", help="labelled set (stratified over yaw), folder with .pts, or plain photos (detector)")
    c.add_argument("-n", "--count", type=count, default=512)
    c.add_argument("--seed", type=integer(0), default=0)
    c.add_argument("--bins", type=integer(1), default=6, help="yaw bins for stratified sampling of labelled sets")
    c.add_argument("--detector", help="plain photos: haar (default), haar:XML, lbp:XML or yunet:ONNX (as in demo)")
    c.add_argument("-o", "--output", required=True)
    c.set_defaults(run=_calib)

    s = sub.add_parser("eval", help="MAE of a model on a labelled set")
    s.add_argument("model_arg", nargs="?", metavar="MODEL", help=f"any artifact (.pt, .onnx); foreign files as "
                   f"FILE@nhwc,bgr,raw; default: {DEFAULT_HELP}")  # fmt: skip
    s.add_argument("-m", "--model", help="the model, as an option")
    s.add_argument("--data", required=True, help="AFLW2000/300W-LP folder, BIWI folder or .npz")
    s.add_argument("--json", help="also write the result as JSON here")
    s.set_defaults(run=_eval)

    s = sub.add_parser("predict", help="angles of the faces in images")
    s.add_argument("images", nargs="+", metavar="IMAGE", help="images or folders (faces from .pts landmarks, 64x64 "
                   "crops or a detector); a model file first (.pt, .onnx, .tflite, .engine) is the model")  # fmt: skip
    s.add_argument("-m", "--model", help=f"any artifact; foreign files as FILE@nhwc,bgr,raw; default: {DEFAULT_HELP}")
    s.add_argument("--threads", type=integer(1, 1024))
    s.add_argument("--json", action="store_true", help="one JSON object per face")
    s.add_argument("--detector", default="haar", help="for photos without .pts: haar, haar:XML, lbp:XML or yunet:ONNX")
    s.set_defaults(run=_predict)

    s = sub.add_parser("demo", help="detect faces, draw their axes and angles on images, a video or a camera")
    s.add_argument("sources", nargs="+", metavar="IMAGE|DIR|VIDEO|CAMERA", help="images/folders, a video, or 0")
    s.add_argument("-m", "--model", help="any artifact (.pt, .onnx, .tflite); foreign files as FILE@nhwc,bgr,raw; "
                   f"default: {DEFAULT_HELP}")  # fmt: skip
    s.add_argument("-o", "--output", help="out.jpg|out.png, out_dir/ (one file per image) or out.mp4|out.avi")
    s.add_argument("--detector", default="haar", help="haar (OpenCV's), haar:XML, lbp:XML (the authors') or yunet:ONNX")
    s.add_argument("--show", action="store_true", help="also show the result in a window (needs a GUI OpenCV)")
    s.add_argument("--max-frames", type=integer(1), help="stop a video or camera after this many frames")
    s.add_argument(
        "--montage", type=integer(1), metavar="COLUMNS", help="all images as one picture -o FILE, COLUMNS wide"
    )
    s.add_argument("--landmarks", action="store_true", help="also draw the .pts landmarks found beside an image")
    s.add_argument("--threads", type=integer(1, 1024))
    s.set_defaults(run=_demo)

    s = sub.add_parser("bench", help="latency, accuracy and drift of artifacts side by side, with a budget")
    s.add_argument("models", nargs="+", help="artifacts; foreign ONNX as FILE@nhwc|nchw,bgr|rgb,raw|mean=M,std=S")
    s.add_argument("--data", help="labelled set for MAE (AFLW2000 folder, .npz, ...)")
    s.add_argument("--faces", help="unlabelled real faces for drift and timing (folder with .pts)")
    s.add_argument("--reference", help="artifact that drift is measured against (added to the run)")
    s.add_argument("--budget", help="TOML budget; a violated limit exits 1")
    s.add_argument(
        "--batch",
        type=integer_list(1, MAX_BATCH),
        default=B["batches"],
        help="batch sizes, first one for the headline numbers",
    )
    s.add_argument("--threads", type=integer(1, 1024), default=B["threads"])
    s.add_argument("--runs", type=integer(1), default=B["runs"])
    s.add_argument("--warmup", type=integer(0), default=B["warmup"])
    s.add_argument("--provider", default=B["provider"], help="ONNX Runtime execution provider: cpu, cuda, tensorrt")
    s.add_argument("--device", default=B["device"], help="PyTorch checkpoints (.pt): cpu, cuda, cuda:N")
    s.add_argument(
        "--peak-gflops",
        type=_peak_gflops,
        help="peak FP32 GFLOP/s to report the fraction reached: a number, or 'measure' (a GEMM timed in the run)",
    )
    s.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    s.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions per face with valgrind (ONNX, TFLite; needs the system's valgrind)",
    )
    s.add_argument("--keep-denormals", action="store_true", help="ONNX Runtime: IEEE denormals (slower on real faces)")
    s.add_argument(
        "--processes",
        type=integer(1),
        default=B["processes"],
        help="split the timed runs over N fresh processes (N=1 or N>=3), one after another; each ratio's "
        "interval is then taken between them, so it covers what a rerun changes",
    )
    s.add_argument(
        "--p50-within",
        type=float,
        default=B["p50_within"],
        help="stop timing once every p50's 95%% interval is within +-this share (0.03: 3%%); --runs is then the cap",
    )
    s.add_argument("-o", "--output", required=True, help="report folder")
    s.set_defaults(run=_bench)

    s = sub.add_parser("profile", help="time per ONNX operator; precision per layer of a TensorRT engine")
    s.add_argument("model", help="ONNX file (foreign ones as FILE@nhwc|nchw,bgr|rgb,raw|mean=M,std=S) or .engine")
    s.add_argument("--faces", help="real faces to run on (folder with .pts)")
    s.add_argument("--data", help="or a labelled set (AFLW2000 folder, .npz, ...)")
    s.add_argument("--batch", type=batch, default=1)
    s.add_argument("--threads", type=integer(1, 1024), default=1)
    s.add_argument("--runs", type=integer(1), default=200)
    s.add_argument("--warmup", type=integer(0), default=30)
    s.add_argument("--provider", default="cpu", help="ONNX Runtime execution provider: cpu, cuda, tensorrt")
    s.add_argument("--keep-denormals", action="store_true", help="IEEE denormals (slower on real faces)")
    s.add_argument("--top", type=integer(1), default=20, help="how many of the slowest nodes to list")
    s.add_argument("--per-layer", action="store_true", help="TensorRT engine: time per layer (an IProfiler run)")
    s.add_argument("--cuda-graph", action="store_true", help="TensorRT engine: replay the enqueue from a CUDA graph")
    s.add_argument(
        "--host-memory",
        choices=("pinned", "mapped"),
        default="pinned",
        help="TensorRT engine: host buffers copied by DMA (pinned) or zero-copy on a Jetson (mapped)",
    )
    s.add_argument("-o", "--output", required=True, help="report folder")
    s.set_defaults(run=_profile)

    s = sub.add_parser("debug", help="where an INT8 ONNX loses its angles: per-layer error and drift")
    s.add_argument("model", help="the INT8 Q/DQ ONNX (-int8.onnx)")
    s.add_argument("--reference", required=True, help="the float ONNX it was quantized from")
    s.add_argument("--faces", required=True, help="real faces (folder with .pts, labelled set, synthetic:N[:seed])")
    s.add_argument("-n", "--count", type=count, default=200, help="faces to compare on (the first N)")
    s.add_argument("--alone-faces", type=count, help="faces for the layer-alone drift (default: all --count faces)")
    s.add_argument(
        "--max-drift",
        type=positive_float,
        help="also find the fewest layers to keep float (most harmful first) for this mean drift, in degrees",
    )
    s.add_argument("-o", "--output", required=True, help="report folder")
    s.set_defaults(run=_debug)

    s = sub.add_parser("train", help="train a variant (paper recipe; torchrun for several GPUs)")
    s.add_argument("--data", required=True, help="300W-LP folder, BIWI folder, .npz, synthetic[:N[:seed]]")
    s.add_argument("--val", action="append", help="validation set (repeatable; the first picks best.pt)")
    s.add_argument(
        "--protocol", type=int, default=T["protocol"], choices=(1, 2), help="1: 300W-LP; 2: BIWI 70/30 by subject"
    )
    s.add_argument("--variant", help="named configuration (see `fsanet variants`); default fsanet-1x1-capsule")
    s.add_argument("--init", help="checkpoint to fine-tune (e.g. from `fsanet import-keras`)")
    s.add_argument("--epochs", type=integer(1), default=T["epochs"])
    s.add_argument("--lr", type=positive_float, help="learning rate (default 1e-3; 1e-5 with --qat)")
    s.add_argument(
        "--milestones", type=milestones, default=T["milestones"], help="epochs after which the lr is multiplied by 0.1"
    )
    s.add_argument("--batch", type=batch, help="global batch (default: 16 for protocol 1, 8 for protocol 2)")
    s.add_argument("--seed", type=integer(0), default=T["seed"])
    s.add_argument(
        "--scale", type=float_pair, default=T["scale_range"], help="random box scale range of the augmentation"
    )
    s.add_argument("--no-augment", action="store_true")
    s.add_argument("--limit", type=integer(1), help="use only the first N training faces")
    s.add_argument("--val-limit", type=integer(1), help="use only the first N faces of each validation set")
    s.add_argument(
        "--workers", type=integer(0), default=T["workers"], help="data loader processes per training process"
    )
    s.add_argument("--device", help="cpu, cuda, cuda:N (default: this process's GPU, else cpu)")
    s.add_argument("--no-amp", action="store_true", help="float32 on CUDA too, TF32 off (mixed precision is CUDA-only)")
    s.add_argument("--resume", action="store_true", help="continue the interrupted run in -o")
    s.add_argument("--stop-after", type=integer(1), help="stop after this epoch (continue later with --resume)")
    s.add_argument(
        "--qat",
        action="store_true",
        help="quantization-aware fine-tuning of --init with NNCF (int8 "
        "convolutions); best.pt/last.pt become QAT checkpoints for `fsanet export --to onnx,onnx-int8`",
    )
    s.add_argument("--calib", help="--qat: calibration set (.npz from `fsanet calib build`) for the initial ranges")
    s.add_argument(
        "--distill",
        action="store_true",
        help="--qat: fit the float --init model's angles instead of "
        "the labels (then --data may be unlabelled faces, e.g. a folder with .pts)",
    )
    s.add_argument("-o", "--output", required=True, help="run folder")
    s.set_defaults(run=_train)

    s = sub.add_parser("fuse", help="trained single-model checkpoints -> one fusion checkpoint (their average)")
    s.add_argument("members", nargs="+", help="checkpoints (.pt); the paper fuses 1x1, var and w/o capsule models")
    s.add_argument("-o", "--output", required=True, help="fusion checkpoint to write (.pt)")
    s.set_defaults(run=_fuse)

    s = sub.add_parser("synth", help="procedural heads with exact pose labels -> official .npz (no download)")
    s.add_argument("-n", "--count", type=count, default=2000, help="number of heads")
    s.add_argument("--seed", type=integer(0), default=0, help="head i depends only on (seed, i)")
    s.add_argument("--size", type=integer(64), default=128, help="side of the full render the 64x64 crop is cut from")
    s.add_argument("--workers", type=integer(1), default=1, help="rendering processes (same bytes for any number)")
    s.add_argument("--sheet", help="also write a PNG contact sheet of the first 64 crops with their axes")
    s.add_argument("-o", "--output", required=True, help=".npz to write ('image', 'pose'), readable by --data")
    s.set_defaults(run=_synth)

    s = sub.add_parser("pipeline", help="the main job: model -> calibration -> every target -> bench -> verdict")
    s.add_argument(
        "--weights",
        nargs="+",
        help="synthetic (the packaged fusion trained on synthetic heads), the authors' .h5 files (several: a "
        f"fusion) or one checkpoint (.pt); default: {DEFAULT_HELP}",
    )
    s.add_argument("--calib", default=P["calib"], help="calibration faces: labelled set, photo folder, "
                   "synthetic:N[:seed], or a calib .npz")  # fmt: skip
    s.add_argument("--calib-count", type=count, default=P["calib_count"], help="faces drawn into the calibration set")
    s.add_argument("--data", default=P["data"], help="labelled faces for MAE")
    s.add_argument("--faces", help="unlabelled real faces for drift and timing (default: --data)")
    s.add_argument("--real-data", help="also: labelled real faces for every file's MAE (no timing)")
    s.add_argument("--real-faces", help="also: unlabelled real faces for every file's drift (no timing)")
    s.add_argument("--budget", default=P["budget"], help="TOML budget (default: the shipped one)")
    s.add_argument("--runs", type=integer(1), default=P["runs"], help="bench: the cap of timed calls per artifact")
    s.add_argument(
        "--p50-within",
        type=positive_float,
        default=P["p50_within"],
        help="bench: stop once every p50's 95%% interval is within +-this share (default 0.03)",
    )
    s.add_argument("--threads", type=integer(1, 1024), default=P["threads"])
    s.add_argument("--no-tensorrt", action="store_true", help="do not build TensorRT engines even where it exists")
    s.add_argument("-o", "--output", default=P["output"], help="report folder")
    s.set_defaults(run=_pipeline)

    s = sub.add_parser("bundle", help="a self-contained kit that proves a device: artifacts, golden faces, budget")
    s.add_argument("artifacts", nargs="+", help="artifacts (.onnx, .tflite, .pt); foreign files as FILE@nhwc,bgr,raw")
    s.add_argument("--faces", help="golden faces: folder with .pts, labelled set or .npz (default: synthetic heads)")
    s.add_argument(
        "--count",
        type=integer(1, MAX_GOLDEN_FACES),
        default=200,
        help="golden faces (spread over --faces; synthetic: drawn); at most fsanet.limits.MAX_GOLDEN_FACES",
    )
    s.add_argument("--seed", type=integer(0), default=0, help="seed of the synthetic golden heads")
    s.add_argument("--reference", help="float reference for the golden angles (default: the FP32 ONNX given)")
    s.add_argument("--budget", default="default", help="TOML budget or a shipped name (default, ports)")
    s.add_argument("--calib", help="calibration set (.npz) for TensorRT INT8 built on the device from a float ONNX")
    s.add_argument("--tar", action="store_true", help="also write DIR.tar.gz")
    s.add_argument("--wheel", help="fsanet-edge's py3-none-any wheel to carry (default: built from the source tree)")
    s.add_argument("-o", "--output", required=True, help="kit folder to write (new or empty)")
    s.set_defaults(run=_bundle)

    s = sub.add_parser("check", help="prove this device (or one over ssh) with a kit from `fsanet bundle`")
    s.add_argument("bundle", metavar="DIR", help="kit folder from `fsanet bundle`")
    s.add_argument("-o", "--output", help="report folder (default: DIR/check, with --remote DIR/check-HOST)")
    s.add_argument("--runs", type=integer(1), default=200, help="timed batch-1 calls per artifact and latency state")
    s.add_argument("--warmup", type=integer(0), default=20)
    s.add_argument("--threads", type=integer(1, 1024), default=1)
    s.add_argument("--no-latency", action="store_true", help="accuracy only (emulators: their timings prove nothing)")
    s.add_argument("--build", help="TensorRT engines to build from the kit's ONNX first: tensorrt-fp16,tensorrt-int8")
    s.add_argument("--remote", metavar="USER@HOST[:PATH]", help="copy the kit there over ssh, check, fetch reports")
    s.add_argument("--remote-python", default="python3", help="--remote: the Python with fsanet-edge there")
    s.add_argument("--ssh-option", action="append", metavar="OPT", help="--remote: ssh -o OPT (repeatable): Port=2222")
    s.set_defaults(run=_check)

    s = sub.add_parser("arm", help="drift of ONNX/TFLite files on emulated aarch64 CPU models (qemu-user)")
    s.add_argument("artifacts", nargs="+", help=".onnx and .tflite files (FP32 and INT8) to run on Arm")
    s.add_argument("--reference", required=True, help="the float ONNX; its angles on x86 are the yardstick")
    s.add_argument("--faces", required=True, help="the kit's golden set: real faces (folder, .npz), synthetic:N:SEED")
    s.add_argument("-n", "--count", type=count, default=200, help="faces drawn from --faces, evenly spread")
    s.add_argument("--cpu", default="cortex-a53,cortex-a72,neoverse-n1,max", help="qemu CPU models, comma-separated")
    s.add_argument("--budget", default="default", help="TOML budget, judged per CPU model (default: the shipped one)")
    s.add_argument("--cache", default="build/arm", help="where the arm64 userland, qemu and wheels are kept")
    s.add_argument("--jobs", type=integer(1, 64), default=os.cpu_count() or 1, help="emulated runs at a time")
    s.add_argument("-o", "--output", default="out/arm", help="report folder (arm.json, arm.md)")
    s.set_defaults(run=_arm)

    s = sub.add_parser("variants", help="list the named configurations")
    s.set_defaults(run=_variants)
    for command in [*sub.choices.values(), *calib_sub.choices.values()]:  # `fsanet CMD ... --debug` too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    photos = ["predict", "demo", "eval", "bench", "debug", "pipeline"]  # commands that read image files
    for command in [*(sub.choices[name] for name in photos), calib_sub.choices["build"]]:
        command.add_argument(
            "--max-pixels", type=integer(1, 1 << 40), metavar="N", help="refuse images whose header declares more "
            "than N pixels, before decoding them (default 100,000,000: fsanet.limits.MAX_PIXELS)"
        )  # fmt: skip
    return p


def missing_extra(command: str, module: str | None) -> str | None:
    """The extra to install for a library that a command found missing; None: not optional."""
    from fsanet.extras import extra_for

    return extra_for(module, command)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # a usage error (2, argparse's one line), or --help/--version (0)
        return e.code if isinstance(e.code, int) else 2
    debug = getattr(args, "debug", False)
    with _sigterm_as_interrupt():
        try:
            return _run(args)
        except FsanetError as e:
            return _fail(args, e, e.exit_code, str(e), debug)
        except ModuleNotFoundError as e:
            extra = missing_extra(args.command, e.name)
            if extra is None:
                return _internal_error(args, e, debug)
            fix = f"pip install 'fsanet-edge[{extra}]'"
            return _fail(args, e, 2, f"{e.name} is not installed; install it with: {fix}", debug)
        except KeyboardInterrupt as e:
            print("terminated" if isinstance(e, Terminated) else "interrupted", file=sys.stderr)
            return 143 if isinstance(e, Terminated) else 130
        except OSError as e:
            if e.filename is None:
                return _internal_error(args, e, debug)
            return _fail(args, e, 2, f"{e.filename}: {e.strerror or e}", debug)
        except Exception as e:  # noqa: BLE001 - the one place that turns a bug into exit 3
            return _internal_error(args, e, debug)


def _run(args) -> int:
    """The command, reading images under its --max-pixels bound where it has the option."""
    if getattr(args, "max_pixels", None) is None:
        return args.run(args)
    from fsanet.data.base import pixel_limit

    with pixel_limit(args.max_pixels):
        return args.run(args)


def _fail(args, error: BaseException, code: int, message: str, debug: bool) -> int:
    if debug:
        traceback.print_exception(error)
    first = message.strip().splitlines()[0] if message.strip() else type(error).__name__
    print(f"fsanet {args.command}: error: {first}", file=sys.stderr)
    return code


def _internal_error(args, error: BaseException, debug: bool) -> int:
    """Exit 3: one line on the console, the full traceback in a file (or on the console with --debug)."""
    text = "".join(traceback.format_exception(error))
    where = "printed above"
    if debug:
        print(text, file=sys.stderr, end="")
    else:
        try:
            fd, where = tempfile.mkstemp(prefix=f"fsanet-{args.command}-", suffix=".traceback.txt")
            with os.fdopen(fd, "w") as f:
                f.write(f"fsanet {__version__}, argv {sys.argv}\n{text}")
        except OSError:
            where = "not saved (temporary folder not writable); run again with --debug"
    first = (str(error).strip().splitlines() or [""])[0]
    print(
        f"fsanet {args.command}: internal error: {type(error).__name__}: {first} "
        f"(a bug in fsanet, please report it; full traceback: {where})",
        file=sys.stderr,
    )
    return 3


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises like Ctrl-C while a command runs, so temporary files are removed by the
    same cleanup; the previous handler comes back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # `python -m fsanet.cli` as well as `python -m fsanet`
    raise SystemExit(main())
