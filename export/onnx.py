"""Checkpoint -> ONNX: one flat graph (a fusion runs its members and averages them in-graph),
opset 18, named input/output, dynamic batch, simplified, fully checked, self-describing, and
verified against PyTorch before it is written."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from fsanet.errors import ExportError

OPSET = 18
TOLERANCE_DEG = 1e-3
FORBIDDEN_OPS = {"Loop", "If", "Scan", "SequenceConstruct", "SequenceAt", "SequenceInsert", "SplitToSequence"}


def export_graph(model, path: Path, custom_translation_table: dict | None = None) -> None:
    """torch.onnx (dynamo) export with the project's I/O names and a symbolic batch; custom ops
    (QAT's fake quantizers) come with their ONNX translation in `custom_translation_table`."""
    import torch

    from fsanet.scoped import logger_level

    # a batch-2 example keeps the batch dimension symbolic (a batch of 1 would be specialised)
    example = torch.rand(2, 3, 64, 64) * 255
    batch = torch.export.Dim("batch", min=1, max=65536)
    with logger_level("torch.onnx"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            input_names=["input"],
            output_names=["angles"],
            dynamic_shapes={"x": {0: batch}},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
            custom_translation_table=custom_translation_table,
        )
    program.save(str(path), external_data=False)


def _simplify_and_check(path: Path):
    import onnx
    import onnxslim

    from fsanet.scoped import logger_level

    with logger_level("onnxslim"):  # onnxslim sets its logger's level itself: put it back after
        model = onnxslim.slim(onnx.load(str(path)))
    bad = sorted({n.op_type for n in model.graph.node} & FORBIDDEN_OPS)
    if bad:
        raise ExportError("onnx", f"the graph has control-flow or sequence ops {bad}; it must be flat")
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError("onnx", f"onnx.checker rejected the graph: {e}") from e
    names = ([i.name for i in model.graph.input], [o.name for o in model.graph.output])
    if names != (["input"], ["angles"]):
        raise ExportError("onnx", f"unexpected graph inputs/outputs {names}")
    return model


def _tool_versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "onnx", "onnxscript", "onnxslim", "onnxruntime")} | {
        "fsanet-edge": version("fsanet-edge")
    }


def default_verification_crops(count: int = 256, seed: int = 0) -> tuple[np.ndarray, str]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 64, 64, 3), dtype=np.uint8), f"{count} random crops (seed {seed})"


def export_onnx(
    checkpoint_path: str | Path,
    output: str | Path,
    verify: np.ndarray | None = None,
    verify_name: str = "",
    tolerance: float = TOLERANCE_DEG,
) -> Path:
    """Write `output` (.onnx) and its sidecar manifest; refuse if ONNX Runtime disagrees with
    PyTorch by more than 1e-3 degree on the verification crops (real faces when given)."""
    import onnx
    from fsanet.export import artifact

    from fsanet import checkpoint
    from fsanet.evaluate import predict_torch

    checkpoint_path, output = Path(checkpoint_path), Path(output)
    payload = checkpoint.load_payload(checkpoint_path)
    model = checkpoint.load(checkpoint_path)
    if verify is None:
        verify, verify_name = default_verification_crops()
    manifest = artifact.float_manifest(checkpoint_path, payload, "onnx", _tool_versions(), opset=OPSET)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        export_graph(model, raw)
        graph = _simplify_and_check(raw)
        candidate = Path(tmp) / "model.onnx"
        onnx.save(graph, str(candidate))
        artifact.verify(
            candidate, manifest, predict_torch(model, verify), verify, "onnx",
            against="pytorch", faces=verify_name, max_abs_diff=tolerance,
        )  # fmt: skip
        artifact.write_onnx(graph, output, manifest)
    return output
