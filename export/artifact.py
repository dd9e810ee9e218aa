"""What every export target shares, written once: the manifest of a file made from a checkpoint
or derived from another export, the calibration record, verification through the runtimes, the
atomic write with its sidecar, and the accuracy search behind `--int8-max-drift`.

A target module is then convert -> verify -> write: it builds a candidate file in a temporary
folder, `verify` runs it through `fsanet.runtimes` (the backend that will run it on the device)
against a reference, and `write` moves it into place and writes its sidecar.

Every manifest has the same top-level keys (`MANIFEST_KEYS`, plus `opset` for ONNX files and
the engines built from them, plus the sidecar's `SIDECAR_KEYS`); a target may add facts of its
own beside them (an engine's `tensorrt`, `gpu`, `build_log`, `source_onnx`; a QAT file's
`verification_pytorch`). A key that does not apply holds None: `float_source` of a float file,
`calibration` of a file nobody calibrated, `quantization` of a float file, `verification` of an
engine built without faces. `calibration` and `verification` always have the same keys
(`CALIBRATION_KEYS`, `VERIFICATION_KEYS`; TensorRT's implicit INT8 adds its calibrator's facts),
and so does a search record (`SEARCH_KEYS`, in `quantization.search`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fsanet.calib.build import RECORD_KEYS

from fsanet.errors import BackendUnavailable, DataError, ExportError

MANIFEST_KEYS = (
    "format", "version", "input", "output", "precision", "backend_format", "members", "source", "float_source",
    "calibration", "quantization", "verification", "tools", "built_on",
)  # fmt: skip
SIDECAR_KEYS = ("file", "sha256", "size_bytes")  # what fsanet.manifest.write_sidecar adds
OWN_KEYS = (*SIDECAR_KEYS, "verification")  # facts of one file: a derived file never inherits them
CALIBRATION_KEYS = RECORD_KEYS  # the calibration set's own record (CalibrationSet.record)
VERIFICATION_KEYS = ("against", "faces", "count", "drift_mean_deg", "drift_max_deg", "max_abs_diff_deg")
SEARCH_KEYS = ("max_drift_deg", "op_types_in", "trajectory", "chosen")
TRIAL_KEYS = ("op_types", "drift_mean_deg", "drift_max_deg", "kept", "error")
FORMATS = {".onnx": "onnx", ".tflite": "tflite", ".engine": "tensorrt-engine", ".plan": "tensorrt-engine"}
SHOWN = {"pytorch": "PyTorch"}
BACKEND_NAMES = {".onnx": "ONNX Runtime", ".tflite": "LiteRT", ".engine": "TensorRT", ".plan": "TensorRT"}


# -- the manifest ------------------------------------------------------------------------------
def float_manifest(checkpoint_path: Path, payload: dict, backend_format: str, tools: dict, **fields) -> dict:
    """The manifest of a float file converted from an fsanet checkpoint (`payload`, its stored dict)."""
    from fsanet.files import sha256
    from fsanet.manifest import base_manifest

    return base_manifest(
        precision="fp32",
        backend_format=backend_format,
        members=[m.get("variant") or "custom" for m in payload.get("sources", [])] or None,
        source={"file": checkpoint_path.name, "sha256": sha256(checkpoint_path), "weights": payload.get("sources")},
        float_source=None,
        calibration=None,
        quantization=None,
        verification=None,
        tools=tools,
        built_on=built_on(),
        **fields,
    )


def built_on() -> dict:
    """The machine that writes a file (its fingerprint): an engine or a quantized file's
    behaviour depends on it, and a latency figure taken there only means something with it."""
    from fsanet.machine import fingerprint

    return {k: v for k, v in fingerprint().items() if k != "threads_used"}


def read_source(path: Path, stage: str) -> dict:
    """The manifest of an fsanet export, with its file's name and sha256: the checked sidecar,
    else (ONNX) the copy inside the file."""
    from fsanet.files import sha256
    from fsanet.manifest import METADATA_KEY, parse_embedded, read_sidecar

    manifest = read_sidecar(path)
    if manifest is None and path.suffix == ".onnx" and path.is_file():
        import onnx

        try:
            meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        except Exception as e:  # protobuf's DecodeError and friends
            raise DataError(f"{path}: not a readable ONNX file ({type(e).__name__})") from e
        manifest = parse_embedded(meta.get(METADATA_KEY), path)
        if manifest is not None:
            manifest = dict(manifest, file=path.name, sha256=sha256(path))
    if manifest is None:
        raise DataError(f"{path}: {stage} needs an fsanet export with its manifest (it gives the input format)")
    return manifest


def derive(source: dict, **fields) -> dict:
    """The manifest of a file made from the export whose manifest is `source` (as `read_source`
    gives it): everything but that file's own facts (`OWN_KEYS`), then `fields`. `float_source`
    names the float file the chain started from."""
    manifest = {k: v for k, v in source.items() if k not in OWN_KEYS}
    if source.get("precision") == "fp32":
        float_source = {"file": source["file"], "sha256": source["sha256"]}
    else:
        float_source = source.get("float_source")
    manifest.update(float_source=float_source, verification=None)
    for key in MANIFEST_KEYS:  # a source exported before a key existed
        manifest.setdefault(key, None)
    manifest["backend_format"] = manifest["backend_format"] or FORMATS.get(Path(source["file"]).suffix)
    manifest.update(fields)
    manifest["built_on"] = built_on()  # this machine, not the one that wrote the source
    return manifest


def derived_manifest(float_path: Path, stage: str, **fields) -> dict:
    """The manifest of a file derived from an fsanet FP32 export (ONNX or TFLite)."""
    source = read_source(float_path, stage)
    if source.get("precision") != "fp32":
        raise ExportError(stage, f"{float_path}: needs an fsanet FP32 export, not {source.get('precision')}")
    return derive(source, **fields)


def calibration_record(calib, **extra) -> dict | None:
    """What a quantized file records of its calibration set (`CalibrationSet.record`); None
    for a file made without one."""
    return None if calib is None else calib.record(**extra)


# -- verification through the runtimes ---------------------------------------------------------
def predict(path: Path, crops: np.ndarray, stage: str, manifest: dict | None = None, batch: int = 128) -> np.ndarray:
    """`crops` -> angles through the runtime of `path` (fsanet.runtimes.open + PoseEstimator), as
    they are (a non-finite angle is the caller's to judge). A file its backend cannot load or run
    is an ExportError of `stage`."""
    from fsanet.runtimes import InputFormat
    from fsanet.runtimes import open as open_runtime
    from fsanet.runtimes.estimator import PoseEstimator

    # a candidate has no sidecar yet: its manifest gives the input format
    input_format = InputFormat.from_manifest(manifest) if manifest is not None else None
    try:
        with open_runtime(path, input_format) as rt:
            return PoseEstimator(rt, batch=rt.fixed_batch or batch, check_finite=False).predict(crops)
    except (ExportError, BackendUnavailable):
        raise
    except Exception as e:  # a backend rejects some graphs only when it loads or runs them
        backend = BACKEND_NAMES.get(Path(path).suffix, "the runtime")
        raise ExportError(stage, f"{backend} cannot run the graph: {str(e)[:300]}") from e


def measure_drift(candidate: Path, reference, crops: np.ndarray, stage: str, manifest: dict | None = None) -> dict:
    """fsanet.accuracy.drift of `candidate` from `reference` (a model file, run through
    its runtime, or its angles on `crops`)."""
    from fsanet.accuracy import drift

    if not isinstance(reference, np.ndarray):
        reference = predict(Path(reference), crops, stage)
    return drift(predict(candidate, crops, stage, manifest), reference)


def verification_record(against: str, faces: str, count: int, d: dict) -> dict:
    """The `verification` of a manifest: how far the file is from `against` on `count` faces.
    `max_abs_diff_deg` is `drift_max_deg` under the name the float exports always used."""
    return {
        "against": against,
        "faces": faces,
        "count": int(count),
        "drift_mean_deg": d["mean"],
        "drift_max_deg": d["max"],
        "max_abs_diff_deg": d["max"],
    }


def verify(
    candidate: Path,
    manifest: dict,
    reference,
    crops: np.ndarray,
    stage: str,
    *,
    against: str,
    faces: str,
    max_abs_diff: float | None = None,
) -> dict:
    """Run `candidate` (configured by `manifest`) against `reference` (a model file or its angles)
    on `crops` and record it as `manifest["verification"]`; refuse non-finite angles, and a
    largest difference above `max_abs_diff` when given. Returns the drift."""
    d = measure_drift(candidate, reference, crops, stage, manifest)
    if not np.isfinite(d["max"]):
        raise ExportError(stage, "the angles are not finite (overflow); not written")
    if max_abs_diff is not None and not d["max"] <= max_abs_diff:
        backend, reference_name = BACKEND_NAMES.get(candidate.suffix, "the runtime"), SHOWN.get(against, against)
        raise ExportError(
            stage,
            f"{backend} differs from {reference_name} by {d['max']:.2e} degrees (limit {max_abs_diff:g}); not written",
        )
    manifest["verification"] = verification_record(against, faces, len(crops), d)
    return d


# -- writing -----------------------------------------------------------------------------------
def write(output: Path, manifest: dict, write_file: Callable[[str], object]) -> dict:
    """`write_file(tmp)` moved into place atomically, then the sidecar manifest; returns the
    manifest as the sidecar holds it (with the file's name, sha256 and size)."""
    from fsanet.files import atomic_write
    from fsanet.manifest import write_sidecar

    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:  # every target writes every key; None where a fact does not apply
        raise ExportError("manifest", f"the manifest of {output.name} lacks {missing}")
    atomic_write(output, write_file)
    return json.loads(write_sidecar(output, manifest).read_text())


def write_copy(output: Path, candidate: Path, manifest: dict) -> dict:
    """Write the verified `candidate` file as `output`."""
    return write(output, manifest, lambda dst: Path(dst).write_bytes(candidate.read_bytes()))


def embed_onnx(model, manifest: dict) -> None:
    """The manifest inside an ONNX model's metadata_props too (without the file's own facts)."""
    import onnx

    from fsanet.manifest import METADATA_KEY

    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(manifest)})


def write_onnx(model, output: Path, manifest: dict) -> dict:
    """An ONNX model with its manifest embedded, written as `output` with its sidecar."""
    import onnx

    embed_onnx(model, manifest)
    return write(output, manifest, lambda dst: onnx.save(model, str(dst)))


def verify_and_write_onnx(
    model, output: Path, manifest: dict, reference: Path, crops: np.ndarray, faces: str, stage: str
) -> dict:
    """Convert -> verify -> write for an ONNX file derived from the float ONNX `reference`:
    measure `model`'s drift from it on `crops`, record it, and only then write the file."""
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / output.name
        onnx.save(model, str(candidate))
        verify(candidate, manifest, reference, crops, stage, against=reference.name, faces=faces)
    return write_onnx(model, output, manifest)


# -- the accuracy search behind --int8-max-drift -----------------------------------------------
@dataclass
class Search:
    """Which op types go to INT8 for a mean drift limit, one interface for every target.

    `measure(op_types)` builds and runs one trial and returns its drift (`mean`, `max`); an
    ExportError is a failed trial. `op_types_in` says what a trial's op types are: "float" (kept
    out of INT8) or "int8" (quantized). Two walks over the candidates: `first_within` (more op
    types each trial, stop at the first that holds: ONNX) and `grow` (add each op type, keep it
    when the trial holds: TFLite). `record(chosen)` is the manifest's `quantization.search`.
    """

    max_drift: float
    op_types_in: str
    measure: Callable[[tuple[str, ...]], dict]
    trajectory: list[dict] = field(default_factory=list)

    def holds(self, op_types: Iterable[str]) -> bool:
        op_types = tuple(op_types)
        trial = {
            "op_types": list(op_types),
            "drift_mean_deg": None,
            "drift_max_deg": None,
            "kept": False,
            "error": None,
        }
        try:
            d = self.measure(op_types)
        except ExportError as e:  # a graph its runtime cannot run counts as a failed trial
            trial["error"] = str(e)[:200]
        else:
            trial.update(drift_mean_deg=d["mean"], drift_max_deg=d["max"], kept=bool(d["mean"] <= self.max_drift))
        self.trajectory.append(trial)
        return trial["kept"]

    def first_within(self, trials: Iterable[Iterable[str]]) -> tuple[str, ...] | None:
        """The first of `trials` that holds the limit; None when none does."""
        for op_types in trials:
            if self.holds(op_types):
                return tuple(op_types)
        return None

    def grow(self, candidates: Iterable[str], desc: str = "INT8 op search") -> tuple[str, ...]:
        """Greedy: each candidate joins the chosen op types when the trial with it holds."""
        from tqdm import tqdm

        chosen: list[str] = []
        for op in tqdm(list(candidates), desc=desc, unit="op type", leave=False, disable=None):
            if self.holds((*chosen, op)):
                chosen.append(op)
        return tuple(chosen)

    def record(self, chosen: Iterable[str]) -> dict:
        return {
            "max_drift_deg": self.max_drift,
            "op_types_in": self.op_types_in,
            "trajectory": list(self.trajectory),
            "chosen": list(chosen),
        }
