"""Bytes of weights an artifact reads per face at batch 1, set against this machine's caches.

At batch 1 every weight is read once per face, so a model whose weights outgrow the core's
private L2 reads them from the shared L3 (or memory) every call: its latency then depends on
what the other processes on the machine leave of that cache, and its wall-time ratio to a
smaller model exceeds the ratio of their instruction counts. The bench report uses these
figures to say why a hot ratio misses where the instruction ratio holds.
"""

from __future__ import annotations

import math


def _onnx_tensors(graph):
    """Every constant tensor of a graph and of its subgraphs (a `Loop` body keeps its own)."""
    from onnx import AttributeProto

    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == AttributeProto.GRAPH:
                yield from _onnx_tensors(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _onnx_tensors(g)


def onnx_weight_bytes(path: str) -> int:
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    model = onnx.load(path)
    return sum(math.prod(t.dims) * tensor_dtype_to_np_dtype(t.data_type).itemsize for t in _onnx_tensors(model.graph))


def tflite_weight_bytes(path: str) -> int | None:
    """Sum of the flatbuffer's constant buffers (LiteRT's schema reader; None where the
    interpreter package has none, e.g. tflite-runtime)."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        return None
    with open(path, "rb") as f:
        model = schema.Model.GetRootAs(f.read(), 0)
    # buffers above 2 GB live after the flatbuffer (Offset/Size); FSA-Net's never do, but count both
    return sum(model.Buffers(i).DataLength() + model.Buffers(i).Size() for i in range(model.BuffersLength()))


def weight_bytes(runtime) -> int | None:
    """Bytes of weights of an opened runtime, or None where the format is not read here."""
    if runtime.backend == "onnxruntime":
        return onnx_weight_bytes(str(runtime.path))
    if runtime.backend == "tflite":
        return tflite_weight_bytes(str(runtime.path))
    if runtime.backend == "torch":
        tensors = [*runtime.model.parameters(), *runtime.model.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)
    return None


def cache_lines(result: dict) -> list[str]:
    """Weights per face against the fingerprint's caches, one line per artifact that has them."""
    from fsanet.machine import cache_bytes

    caches = result["machine"].get("caches", {})
    l2, l3 = cache_bytes(caches.get("L2")), cache_bytes(caches.get("L3"))
    weights = {n: r.get("weights_mb") for n, r in result["artifacts"].items() if r.get("weights_mb")}
    if not weights:
        return []
    sizes = ", ".join(f"{k} {_mib(cache_bytes(v))}" for k, v in caches.items() if cache_bytes(v))
    lines = [f"Weights read per face at batch 1, against this machine's caches ({sizes or 'sizes unknown'}):"]
    for name, mb in weights.items():
        lines.append(f"- {name}: {mb:.2f} MB" + (f", {_where(mb * 1e6, l2, l3)}" if l2 else ""))
    return [*lines, ""]


def _where(size: float, l2: int, l3: int | None) -> str:
    if size <= l2:
        return "fits the core's L2"
    if l3 and size <= l3:
        return f"{size / l2:.1f}x the core's L2: read from the shared L3 every call"
    return "larger than the caches: read from memory every call"


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n / 2**10:g} KiB"


def why_slower(result: dict, name: str, other: str) -> str:
    """Why `name`'s wall-time ratio to `other` can exceed its instruction ratio: the weights
    each reads per face against the L2 of the fingerprint ('' when the weights are unknown)."""
    from fsanet.machine import cache_bytes

    a = result["artifacts"][name].get("weights_mb")
    b = result["artifacts"][other].get("weights_mb")
    l2 = cache_bytes(result["machine"].get("caches", {}).get("L2"))
    if not (a and b and l2):
        return ""
    text = f"{name} reads {a:.2f} MB of weights per face, {other} {b:.2f} MB; L2 {_mib(l2)} per core"
    instr = result["artifacts"][name].get("instructions_ratio_to", {}).get(other)
    if instr:
        text += f"; by instructions the ratio is {instr:.3f}x"
    return text
