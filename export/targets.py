"""`fsanet export --to a,b,c`: every requested target from one checkpoint, each with its manifest,
and a summary of how far each file is from the float model.

The float ONNX is always written first: every other file is judged against it (drift on the
`--verify` faces, else on the calibration faces). TFLite targets start from one FP32 TFLite
file (LiteRT-Torch), TensorRT engines from the ONNX files.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fsanet.errors import BackendUnavailable, DataError

ONNX_TARGETS = ("onnx", "onnx-fp16", "onnx-int8")
TFLITE_TARGETS = ("tflite", "tflite-fp16", "tflite-dynamic", "tflite-int8")
TENSORRT_TARGETS = ("tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8")
TARGETS = ONNX_TARGETS + TFLITE_TARGETS + TENSORRT_TARGETS
EXTENSIONS = {"onnx": ".onnx", "tflite": ".tflite", "tensorrt": ".engine"}


def artifact_name(stem: str, target: str) -> str:
    """The file a target writes for a checkpoint named `stem`: stem.onnx, stem-int8.onnx,
    stem-fp16.tflite, stem-int8.engine, ... (its name in a bench run and in a budget's sections)."""
    family, _, variant = target.partition("-")
    return f"{stem}-{variant}{EXTENSIONS[family]}" if variant else f"{stem}{EXTENSIONS[family]}"


NEEDS_CALIB = ("onnx-int8", "tflite-int8", "tensorrt-int8")
QAT_TARGETS = ("onnx", "onnx-int8")  # a QAT checkpoint (`fsanet train --qat`): its float start and its INT8 file


@dataclass
class ExportJob:
    """What every target builder needs: the inputs, the float ONNX, and the judging faces."""

    checkpoint: Path
    out_dir: Path
    calib: object | None
    verify: np.ndarray | None
    verify_name: str
    int8_max_drift: float | None = None
    int8_float_ops: tuple[str, ...] | None = None
    qat: bool = False
    trt_options: dict = field(default_factory=dict)  # build_engine keywords (dla_core, gpu_fallback)
    int8_float_layers: tuple[str, ...] = ()  # node names kept float (fsanet debug --max-drift's recipe)
    int8_objective: str | None = None  # latency|size: the INT8 ONNX/TFLite scope chosen by measurement
    candidates: int = 1  # with int8_objective: how many of the best scopes to write
    targets: tuple[str, ...] = ()  # every target of this run
    float_onnx: Path = field(init=False)
    built: dict[str, Path] = field(default_factory=dict, init=False)  # target -> file, this run
    _tflite: Path | None = field(default=None, init=False)
    _reference: np.ndarray | None = field(default=None, init=False)

    @property
    def stem(self) -> str:
        return self.checkpoint.stem

    def path(self, suffix: str) -> Path:
        return self.out_dir / f"{self.stem}{suffix}"

    def file(self, target: str) -> Path:
        return self.out_dir / artifact_name(self.stem, target)

    def judge(self, target: str) -> tuple[np.ndarray, str]:
        """Faces to measure drift on: --verify, else the calibration faces."""
        if self.verify is not None:
            return self.verify, self.verify_name
        if self.calib is not None:
            return self.calib.crops, f"the {len(self.calib)} calibration faces"
        raise DataError(f"--to {target} needs faces to judge it on: --verify FACES or --calib calib.npz")

    def reference(self, target: str) -> np.ndarray:
        """The float ONNX's angles on the judging faces (computed once)."""
        if self._reference is None:
            from fsanet.export.artifact import predict

            faces, _ = self.judge(target)
            self._reference = predict(self.float_onnx, faces, target)
        return self._reference

    def float_tflite(self) -> Path:
        """The FP32 TFLite file every TFLite target starts from (written once)."""
        if self._tflite is None:
            from fsanet.export.tflite import export_tflite

            self._tflite = self.file("tflite")
            export_tflite(self.checkpoint, self._tflite, self.verify, self.verify_name)
        return self._tflite


def _check(targets: list[str], calib_path, skip_unavailable: bool, qat: bool = False) -> list[str]:
    other = [t for t in targets if t not in QAT_TARGETS]
    if qat and other:
        raise DataError(f"--to {','.join(other)}: a QAT checkpoint exports to {', '.join(QAT_TARGETS)} only")
    for t in targets:
        if t in NEEDS_CALIB and not calib_path and not qat:
            raise DataError(f"--to {t} needs --calib calib.npz (build one with `fsanet calib build`)")
    trt = [t for t in targets if t in TENSORRT_TARGETS]
    if trt and importlib.util.find_spec("tensorrt") is None and not skip_unavailable:
        raise BackendUnavailable(
            f"TensorRT (for --to {','.join(trt)}; build engines on the device that runs them, or pass "
            "--skip-unavailable to build the other targets here)",
            "tensorrt",
        )
    return targets


def export_targets(
    checkpoint_path,
    targets: list[str],
    out_dir,
    calib_path=None,
    verify_path=None,
    int8_max_drift: float | None = None,
    int8_float_ops: tuple[str, ...] | None = None,
    skip_unavailable: bool = False,
    dla_core: int | None = None,
    gpu_fallback: bool = True,
    int8_float: str | None = None,
    progress=None,
    int8_float_layers: tuple[str, ...] = (),
    int8_objective: str | None = None,
    candidates: int = 1,
) -> list[dict]:
    """Build every target; returns one summary row per target (skipped ones say why).
    `dla_core`/`gpu_fallback`: TensorRT engines on that DLA core (fsanet.export.trt_dla);
    `int8_float`: "fp16" builds tensorrt-int8 strongly typed with FP16 float parts.
    `int8_objective`/`candidates`: the INT8 ONNX/TFLite scope chosen by measurement
    (export.int8_scopes, export.tflite_scopes).
    `progress(target)` is called as each target is done (a console stage's bar)."""
    from fsanet.export.onnx import export_onnx
    from fsanet.export.qat import is_qat_checkpoint

    qat = is_qat_checkpoint(checkpoint_path)
    if qat and (int8_max_drift is not None or int8_float_ops is not None or int8_float_layers):
        raise DataError("--int8-max-drift/--int8-float-ops/--int8-float-layers choose post-training quantization; "
                        "a QAT checkpoint "
                        "already holds its quantizers (set at `fsanet train --qat`)")  # fmt: skip
    trt_options = check_options(
        targets, verify_path, int8_max_drift, int8_float_ops, int8_float_layers, int8_objective, candidates,
        dla_core, gpu_fallback, int8_float,
    )  # fmt: skip
    _check(targets, calib_path, skip_unavailable, qat)
    calib = None
    if calib_path:
        from fsanet import calib as calib_mod

        calib = calib_mod.load(calib_path)
    verify, verify_name = _faces(verify_path) if verify_path else (None, "")
    job = ExportJob(
        Path(checkpoint_path), Path(out_dir), calib, verify, verify_name, int8_max_drift, int8_float_ops, qat,
        trt_options, int8_float_layers=tuple(int8_float_layers), int8_objective=int8_objective,
        candidates=candidates, targets=tuple(targets),
    )  # fmt: skip
    job.float_onnx = job.file("onnx")
    export_onnx(_float_checkpoint(job), job.float_onnx, verify, verify_name)
    rows = []
    for target in sorted(targets, key=TARGETS.index):  # float files first: the others derive from them
        rows.append(_BUILDERS[target.split("-")[0]](job, target, skip_unavailable))
        if rows[-1]["file"]:
            job.built[target] = Path(rows[-1]["file"])
        if progress is not None:
            progress(target)
    float_size = job.float_onnx.stat().st_size
    for r in rows:
        r["size_ratio"] = r["size_mb"] * 1e6 / float_size if r["file"] else None
    return rows


def check_options(
    targets: list[str],
    verify_path=None,
    int8_max_drift: float | None = None,
    int8_float_ops: tuple[str, ...] | None = None,
    int8_float_layers: tuple[str, ...] = (),
    int8_objective: str | None = None,
    candidates: int = 1,
    dla_core: int | None = None,
    gpu_fallback: bool = True,
    int8_float: str | None = None,
) -> dict:
    """Every refusal of the options themselves (no file read), made before any work: unknown
    targets or op types, options that conflict or that no requested target takes. Returns the
    TensorRT options."""
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise DataError(f"--to {','.join(unknown) or '(empty)'}: not a target; available: {', '.join(TARGETS)}")
    trt_options = _check_trt_options(targets, dla_core, gpu_fallback, int8_float)
    if int8_objective is not None or candidates > 1:
        _check_objective(
            targets, int8_objective, candidates, int8_max_drift, verify_path, int8_float_ops, int8_float_layers
        )
    _check_int8_recipe(targets, int8_max_drift, int8_float_ops, tuple(int8_float_layers), verify_path, int8_objective)
    return trt_options


def _check_int8_recipe(targets, max_drift, float_ops, float_layers, verify_path, objective) -> None:
    """--int8-float-ops/-layers (a recipe) and --int8-max-drift (a search for one): which INT8
    targets take them, and never both (the search would ignore the recipe)."""
    if float_ops is not None:
        check_float_ops(float_ops)
    recipe = [o for o, v in (("--int8-float-ops", float_ops is not None), ("--int8-float-layers", float_layers)) if v]
    if recipe and "onnx-int8" not in targets:
        raise DataError(f"{'/'.join(recipe)} applies to the INT8 ONNX file; add --to onnx-int8")
    if max_drift is None:
        return
    if recipe:
        raise DataError(
            f"{'/'.join(recipe)} is a recipe already and --int8-max-drift searches for one; give one of them"
        )
    if "onnx-int8" not in targets and "tflite-int8" not in targets:
        raise DataError("--int8-max-drift applies to INT8 files; add --to onnx-int8 or tflite-int8")
    if "onnx-int8" in targets and objective is None and verify_path is None:
        raise DataError("--int8-max-drift needs --verify FACES (real faces not in the calibration set)")


def check_float_ops(ops: tuple[str, ...]) -> None:
    """--int8-float-ops names ONNX op types (NNCF ignores a name it does not know without a word)."""
    import difflib

    from fsanet.export.quantize import FLOAT_OPS
    from onnx import defs

    known = {s.name for s in defs.get_all_schemas() if s.domain == ""}
    unknown = [o for o in ops if o not in known]
    if unknown:
        close = {c for o in unknown for c in difflib.get_close_matches(o, sorted(known), 1)}
        hint = f" (did you mean {', '.join(sorted(close))}?)" if close else ""
        raise DataError(
            f"--int8-float-ops {','.join(unknown)}: not an ONNX op type{hint}; op types of fsanet's graphs that "
            f"can stay float: Conv, {', '.join(FLOAT_OPS)} (the default: all but Conv)"
        )


def _check_ops_in_graph(ops: tuple[str, ...], float_onnx: Path) -> None:
    """The op types named are in this model's graph (a valid ONNX op type it lacks keeps nothing float)."""
    import onnx

    present = {n.op_type for n in onnx.load(str(float_onnx), load_external_data=False).graph.node}
    missing = sorted(set(ops) - present)
    if missing:
        raise DataError(
            f"--int8-float-ops {','.join(missing)}: {float_onnx.name} has no such op; its op types: "
            f"{', '.join(sorted(present))}"
        )


def _float_checkpoint(job: ExportJob) -> Path:
    """The checkpoint of the float model: the one given, or for a QAT checkpoint the float model
    it started from, written beside the exports as `<stem>-float.pt` (the INT8 file's reference)."""
    if not job.qat:
        return job.checkpoint
    from fsanet.train.qat import read_payload, write_float_checkpoint

    job.out_dir.mkdir(parents=True, exist_ok=True)
    return write_float_checkpoint(read_payload(job.checkpoint), job.path("-float.pt"))


def _faces(path):
    from fsanet.data import open_faces

    faces = open_faces(path)
    return faces.images(progress=True), faces.describe()


def _onnx(job: ExportJob, target: str, _skip: bool) -> dict:
    from fsanet.manifest import read_sidecar

    if target == "onnx":
        v = read_sidecar(job.float_onnx)["verification"]
        return _row(target, job.float_onnx, v["faces"], f"{v['max_abs_diff_deg']:.1e} vs PyTorch")
    if target == "onnx-fp16":
        from fsanet.export.fp16 import to_fp16

        out = job.file(target)
        faces, name = job.judge(target)
        v = to_fp16(job.float_onnx, out, faces, name)["verification"]
        return _row(target, out, v["faces"], _drift_text(v, "float ONNX", 4))
    from fsanet.export.quantize import FLOAT_OPS, quantize_onnx, quantize_with_budget

    out = job.file(target)
    if job.qat:
        from fsanet.export.qat import export_qat_onnx

        faces, name = job.judge(target)
        m = export_qat_onnx(job.checkpoint, job.float_onnx, out, faces, name)
    elif job.int8_objective is not None:
        from fsanet.export.int8_scopes import choose_scope

        written = choose_scope(
            job.float_onnx, job.calib, out, job.int8_max_drift, job.verify, job.verify_name, job.int8_objective,
            job.candidates, products="tensorrt-int8" not in job.targets,  # TensorRT parses no dynamic int8 products
        )  # fmt: skip
        m = written[0]
    elif job.int8_max_drift is not None:  # check_options refused a recipe with it, and no --verify
        m = quantize_with_budget(job.float_onnx, job.calib, out, job.int8_max_drift, job.verify, job.verify_name)
    else:
        ops = FLOAT_OPS if job.int8_float_ops is None else job.int8_float_ops
        _check_ops_in_graph(job.int8_float_ops or (), job.float_onnx)
        m = quantize_onnx(
            job.float_onnx, job.calib, out, ops, job.verify, job.verify_name, float_layers=job.int8_float_layers
        )
    v = m["verification"]
    return _row(target, out, v["faces"], _drift_text(v, "float ONNX"))


def _tflite(job: ExportJob, target: str, _skip: bool) -> dict:
    source = job.float_tflite()
    if target == "tflite":
        from fsanet.export.artifact import measure_drift

        from fsanet.manifest import read_sidecar

        v = read_sidecar(source)["verification"]
        text = f"{v['max_abs_diff_deg']:.1e} vs PyTorch"
        if job.verify is not None or job.calib is not None:
            faces, _ = job.judge(target)
            d = measure_drift(source, job.reference(target), faces, target)
            text += f"; {d['max']:.1e} / {d['mean']:.1e} vs float ONNX"
        return _row(target, source, v["faces"], text)
    from fsanet.export.tflite_quantize import TARGET_PRECISION, quantize_tflite

    out = job.file(target)
    faces, name = job.judge(target)
    if target == "tflite-int8" and job.int8_objective is not None:
        from fsanet.export.tflite_scopes import choose_tflite_scope

        m = choose_tflite_scope(
            source, job.calib, out, job.int8_max_drift, job.reference(target), faces, name, job.int8_objective,
            job.candidates, reference_name=job.float_onnx.name,
        )[0]  # fmt: skip
        return _row(target, out, name, _drift_text(m["verification"], "float ONNX"))
    m = quantize_tflite(
        source, out, TARGET_PRECISION[target], job.reference(target), faces, name, job.calib,
        max_drift=job.int8_max_drift, reference_name=job.float_onnx.name,
    )  # fmt: skip
    return _row(target, out, name, _drift_text(m["verification"], "float ONNX"))


def _check_objective(targets, objective, candidates, max_drift, verify_path, float_ops, float_layers) -> None:
    from fsanet.export.int8_scopes import check_objective

    if "onnx-int8" not in targets and "tflite-int8" not in targets:
        raise DataError("--int8-objective/--candidates choose the INT8 scope; add --to onnx-int8 or tflite-int8")
    if float_ops is not None or float_layers:
        raise DataError("--int8-objective searches the scope itself; give it without --int8-float-ops/-layers")
    check_objective(objective, candidates, max_drift, verify_path)


def _check_trt_options(targets: list[str], dla_core, gpu_fallback: bool, int8_float: str | None = None) -> dict:
    """The TensorRT-only options, refused before anything is built when no target takes them."""
    from fsanet.export.tensorrt import TARGET_PRECISION as PRECISION
    from fsanet.export.tensorrt import check_dla_options, check_int8_float

    options = {}
    if int8_float is not None:
        check_int8_float(int8_float)
        if "tensorrt-int8" not in targets:
            raise DataError("--int8-float-parts applies to INT8 engines; add --to tensorrt-int8")
        options["int8_float"] = int8_float
    if dla_core is None and gpu_fallback:
        return options

    trt = [t for t in targets if t in TENSORRT_TARGETS]
    if not trt:
        raise DataError(
            "--dla-core/--no-gpu-fallback apply to TensorRT engines; add --to tensorrt-fp16 or tensorrt-int8"
        )
    for t in trt:
        check_dla_options(dla_core, gpu_fallback, PRECISION[t])
    return options | {"dla_core": dla_core, "gpu_fallback": gpu_fallback}


def _tensorrt(job: ExportJob, target: str, _skip: bool) -> dict:
    """Engines run only on the GPU and TensorRT version that built them: build on the device."""
    if importlib.util.find_spec("tensorrt") is None:  # _check refused already unless skipping was asked
        return {"target": target, "file": None, "size_mb": 0.0, "faces": "", "diff": "skipped: TensorRT not installed"}
    from fsanet.export.tensorrt import TARGET_PRECISION as PRECISION
    from fsanet.export.tensorrt import build_engine

    out = job.file(target)
    faces, name = job.judge(target) if job.verify is not None or job.calib is not None else (None, "")
    # INT8: explicitly quantized from the Q/DQ file when this run wrote one (signed symmetric, as
    # TensorRT wants), else implicit from the float ONNX with the entropy calibrator
    qdq = job.built.get("onnx-int8")
    source = qdq if target == "tensorrt-int8" and qdq else job.float_onnx
    options = {k: v for k, v in job.trt_options.items() if k != "int8_float" or target == "tensorrt-int8"}
    m = build_engine(source, out, PRECISION[target], job.calib, verify=faces, verify_name=name, **options)
    v = m.get("verification")
    text = _drift_text(v, "float ONNX") if v else "not verified (no faces given)"
    return _row(target, out, name, text + _dla_text(m["tensorrt"].get("dla")))


def _dla_text(dla: dict | None) -> str:
    """The summary's note on a DLA engine: its core, and the layers TensorRT put on the GPU."""
    if not dla:
        return ""
    on_gpu = dla.get("running_on_gpu")
    where = "layers on the GPU not listed in the build log" if on_gpu is None else f"{len(on_gpu)} layers on the GPU"
    return f"; DLA core {dla['core']}, {where}"


_BUILDERS = {"onnx": _onnx, "tflite": _tflite, "tensorrt": _tensorrt}


def _drift_text(v: dict, against: str, digits: int = 3) -> str:
    return f"{v['drift_max_deg']:.3f} / {v['drift_mean_deg']:.{digits}f} vs {against}"


def _row(target, path: Path, faces: str, diff: str) -> dict:
    return {"target": target, "file": str(path), "size_mb": path.stat().st_size / 1e6, "faces": faces, "diff": diff}
