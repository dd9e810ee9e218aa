"""`fsanet export --to a,b,c`: every requested target from one checkpoint, each with its manifest,
and a summary of how far each file is from the float model."""

from __future__ import annotations

from pathlib import Path

from fsanet.errors import DataError

TARGETS = ("onnx", "onnx-fp16", "onnx-int8", "tflite")


def _faces(path):
    from fsanet.data import open_faces

    faces = open_faces(path)
    return faces.images(progress=True), faces.describe()


def export_targets(
    checkpoint_path,
    targets: list[str],
    out_dir,
    calib_path=None,
    verify_path=None,
    int8_max_drift: float | None = None,
    int8_float_ops: tuple[str, ...] | None = None,
) -> list[dict]:
    from fsanet.export.onnx import export_onnx

    from fsanet.manifest import read_sidecar

    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise DataError(
            f"--to {','.join(unknown) or '(empty)'}: not a target this version builds; available: "
            f"{', '.join(TARGETS)} (TFLite FP16/INT8 and TensorRT targets are not built yet)"
        )
    if "onnx-int8" in targets and not calib_path:
        raise DataError("--to onnx-int8 needs --calib calib.npz (build one with `fsanet calib build`)")
    calib = None
    if calib_path:
        from fsanet import calib as calib_mod

        calib = calib_mod.load(calib_path)
    verify, verify_name = _faces(verify_path) if verify_path else (None, "")
    out_dir = Path(out_dir)
    stem = Path(checkpoint_path).stem
    float_onnx = out_dir / f"{stem}.onnx"
    export_onnx(checkpoint_path, float_onnx, verify, verify_name)  # every other target starts from it
    float_size = float_onnx.stat().st_size
    rows = []
    if "onnx" in targets:
        v = read_sidecar(float_onnx)["verification"]
        rows.append(_row("onnx", float_onnx, float_size, v["faces"], f"{v['max_abs_diff_deg']:.1e} vs PyTorch"))
    if "onnx-fp16" in targets:
        from fsanet.export.fp16 import to_fp16

        out = out_dir / f"{stem}-fp16.onnx"
        faces, name = (
            (verify, verify_name)
            if verify is not None
            else (calib.crops, "the calibration faces")
            if calib
            else (None, "")
        )
        if faces is None:
            raise DataError("--to onnx-fp16 needs faces to verify on: --verify FACES or --calib calib.npz")
        v = to_fp16(float_onnx, out, faces, name)["verification"]
        rows.append(
            _row(
                "onnx-fp16",
                out,
                float_size,
                v["faces"],
                f"{v['drift_max_deg']:.3f} / {v['drift_mean_deg']:.4f} vs float ONNX",
            )
        )
    if "tflite" in targets:
        from fsanet.benchmarks.accuracy import drift
        from fsanet.export.tflite import export_tflite
        from fsanet.runtimes import open as open_runtime

        out = out_dir / f"{stem}.tflite"
        v = export_tflite(checkpoint_path, out, verify, verify_name)["verification"]
        faces = verify if verify is not None else (calib.crops if calib else None)
        diff = f"{v['max_abs_diff_deg']:.1e} vs PyTorch"
        if faces is not None:
            with open_runtime(out) as rt, open_runtime(float_onnx) as ref:
                d = drift(rt.predict(faces), ref.predict(faces))
            diff += f"; {d['max']:.1e} / {d['mean']:.1e} vs float ONNX"
        rows.append(_row("tflite", out, float_size, v["faces"], diff))
    if "onnx-int8" in targets:
        from fsanet.export.quantize import FLOAT_OPS, quantize_onnx, quantize_with_budget

        out = out_dir / f"{stem}-int8.onnx"
        if int8_max_drift is not None:
            if verify is None:
                raise DataError("--int8-max-drift needs --verify FACES (real faces not in the calibration set)")
            m = quantize_with_budget(float_onnx, calib, out, int8_max_drift, verify, verify_name)
        else:
            ops = FLOAT_OPS if int8_float_ops is None else int8_float_ops
            m = quantize_onnx(float_onnx, calib, out, ops, verify, verify_name)
        v = m["verification"]
        rows.append(
            _row(
                "onnx-int8",
                out,
                float_size,
                v["faces"],
                f"{v['drift_max_deg']:.3f} / {v['drift_mean_deg']:.3f} vs float ONNX",
            )
        )
    return rows


def _row(target, path: Path, float_size: int, faces: str, diff: str) -> dict:
    size = path.stat().st_size
    return {
        "target": target,
        "file": str(path),
        "size_mb": size / 1e6,
        "size_ratio": size / float_size,
        "faces": faces,
        "diff": diff,
    }
