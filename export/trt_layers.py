"""TensorRT's layer report: the engine inspector's JSON (IEngineInspector, LayerInformationFormat
JSON, from an engine built with ProfilingVerbosity DETAILED), written next to the engine as
`<engine>.layers.json`, and read back here into the precision each layer actually runs in.
Pure: no TensorRT needed to read a report.

The schema is the one NVIDIA's TensorRT Engine Explorer reads (NVIDIA/TensorRT@release/10.3,
tools/experimental/trt-engine-explorer/trex/parser.py, layer.py, activations.py): a top-level
object with "Layers" (one object per layer with "Name", "LayerType", "Inputs" and "Outputs",
each tensor with "Name", "Dimensions" and "Format/Datatype", plus "TacticName" where known) and
"Bindings". Without DETAILED verbosity "Layers" holds bare names. A layer's precision is that of
its first input (as trex takes it), else of its first output.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from fsanet.errors import DataError

# words of "Format/Datatype" strings ("Row major linear FP32", "Channel major FP16 format where
# channel % 8 == 0", "Thirty-two wide channel vectorized row major Int8 format", "Half", ...)
PRECISION_WORDS = {
    "FP32": "FP32", "Float": "FP32", "FP16": "FP16", "Half": "FP16", "BFloat16": "BF16", "BF16": "BF16",
    "Int8": "INT8", "INT8": "INT8", "FP8": "FP8", "Int32": "INT32", "INT32": "INT32", "Int64": "INT64",
    "UInt8": "UINT8", "Bool": "BOOL", "BOOL": "BOOL", "Double": "FP64",
}  # fmt: skip


def report_path(engine: str | Path) -> Path:
    return Path(f"{engine}.layers.json")


def tensor_precision(fmt: str) -> str:
    for word in re.findall(r"[A-Za-z0-9]+", fmt or ""):
        if word in PRECISION_WORDS:
            return PRECISION_WORDS[word]
    return "unknown"


def layers(info: dict, source: str = "layer report") -> list[dict]:
    """One row per layer: name, type, precision, tactic, input/output formats."""
    raw = info.get("Layers") if isinstance(info, dict) else None
    if not isinstance(raw, list):
        raise DataError(f"{source}: not a TensorRT engine inspector report (no 'Layers' list)")
    if raw and not isinstance(raw[0], dict):
        raise DataError(
            f"{source}: the layers have names only; the engine was built without DETAILED profiling "
            "verbosity (rebuild it with fsanet, or trtexec --profilingVerbosity=detailed)"
        )
    rows = []
    for layer in raw:
        ins, outs = layer.get("Inputs") or [], layer.get("Outputs") or []
        first = (ins or outs or [{}])[0]
        rows.append(
            {
                "name": layer.get("Name", "?"),
                "type": layer.get("LayerType", "?"),
                "precision": tensor_precision(first.get("Format/Datatype", "")),
                "tactic": layer.get("TacticName") or layer.get("TacticValue"),
                "inputs": [t.get("Format/Datatype") for t in ins],
                "outputs": [t.get("Format/Datatype") for t in outs],
                "output_shapes": [t.get("Dimensions") for t in outs],
            }
        )
    return rows


def read_report(path: str | Path) -> list[dict]:
    path = Path(path)
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise DataError(
            f"{path}: no layer report beside the engine; engines built by fsanet write one "
            "(trtexec: --profilingVerbosity=detailed --exportLayerInfo=FILE)"
        ) from e
    except ValueError as e:
        raise DataError(f"{path}: not JSON ({e})") from e
    return layers(info, str(path))


def precision_counts(rows: list[dict]) -> dict[str, int]:
    """How many layers run in each precision, most first (reformat and constant layers included)."""
    return dict(Counter(r["precision"] for r in rows).most_common())


def markdown(rows: list[dict], title: str) -> str:
    counts = ", ".join(f"{p} {n}" for p, n in precision_counts(rows).items())
    lines = [
        f"# fsanet profile: {title}",
        "",
        f"{len(rows)} layers in the engine (TensorRT's engine inspector, after its fusions): {counts}.",
        "",
        "| layer | type | precision | tactic | input format |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        fmt = r["inputs"][0] if r["inputs"] else (r["outputs"][0] if r["outputs"] else "")
        lines.append(f"| {r['name']} | {r['type']} | {r['precision']} | {r['tactic'] or '-'} | {fmt} |")
    return "\n".join(lines) + "\n"
