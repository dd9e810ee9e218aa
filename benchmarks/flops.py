"""FLOPs per face of an ONNX graph, from its convolutions and matrix products.

Counts 2 x multiply-accumulates of Conv, ConvTranspose, MatMul and Gemm (elementwise ops are
negligible in FSA-Net: under 1%), with shapes from ONNX shape inference at batch 1. Graphs with
control flow (a `Loop` in a third-party conversion) or shapes that inference cannot resolve
are not counted: None.
"""

from __future__ import annotations

import math

COUNTED = {"Conv", "ConvTranspose", "MatMul", "Gemm", "FusedConv", "FusedMatMul", "FusedGemm"}
CONTROL_FLOW = {"Loop", "If", "Scan"}


def _fix_batch(model, batch: int = 1):
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = batch
    return model


def onnx_flops(path: str) -> int | None:
    """FLOPs for one face (batch 1), or None for graphs with control flow."""
    import onnx

    model = onnx.load(path)
    if any(n.op_type in CONTROL_FLOW for n in model.graph.node):
        return None
    model = onnx.shape_inference.infer_shapes(_fix_batch(model), data_prop=True)
    shapes = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.dim_value > 0 for d in dims):
            shapes[vi.name] = [d.dim_value for d in dims]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    total = 0
    for node in model.graph.node:
        if node.op_type not in COUNTED:
            continue
        ins = [shapes.get(n) for n in node.input[:2]]
        out = shapes.get(node.output[0])
        if out is None or None in ins:
            return None  # shapes that inference cannot resolve (old exporters): not countable
        if node.op_type.endswith("Conv") or node.op_type == "ConvTranspose":
            kernel = ins[1]  # (Cout, Cin/groups, kh, kw)
            total += 2 * math.prod(out) * math.prod(kernel[1:])
        else:
            k = ins[0][-1]
            total += 2 * math.prod(out) * k
    return total


def flops_per_face(runtime) -> int | None:
    """FLOPs for one face of an opened runtime: ONNX graphs counted from their convolutions and
    matrix products, PyTorch checkpoints with torch's FLOP counter; None where neither applies."""
    if runtime.backend == "onnxruntime":
        return onnx_flops(str(runtime.path))
    if runtime.backend == "torch":
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from fsanet.scoped import torch_threads

        size = runtime.input_format.size
        with FlopCounterMode(display=False) as counter, torch.inference_mode(), torch_threads(runtime.threads):
            runtime.model(torch.zeros(1, 3, size, size, device=runtime.device))
        return int(counter.get_total_flops())
    return None
