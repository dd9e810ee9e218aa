"""Undo the fused graph's shared image convolution before INT8 quantization.

The float fusion computes the block-0 depthwise convolution of all its streams as one grouped
convolution of the image (channels colour-major, stream-minor), and each stream takes its three
channels with a strided Slice. That is one operator instead of six in FP32, but a quantizer
with one per-tensor scale on the shared output would serve six streams with different ranges.
Here each Slice becomes that stream's own convolution of the image again (the same weights and
arithmetic), so activation scales stay per stream.
"""

from __future__ import annotations

import numpy as np


def split_image_depthwise(model) -> int:
    """Rewrite `model` (onnx.ModelProto) in place; returns how many streams were split off (0
    when the graph has no such shared convolution, e.g. a single model)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    image = graph.input[0].name
    for conv in [n for n in graph.node if n.op_type == "Conv" and n.input[0] == image]:
        split = _stream_slices(conv, consumers.get(conv.output[0], []), inits)
        if not split:
            continue
        weight = numpy_helper.to_array(inits[conv.input[1]])
        convs = []
        for slice_node, channels in split:
            name = f"{slice_node.output[0]}_weight"
            graph.initializer.append(numpy_helper.from_array(weight[channels], name))
            convs.append(helper.make_node("Conv", [image, name], list(slice_node.output), name=f"{name}_conv"))
            convs[-1].attribute.extend(conv.attribute)
        nodes = [n for n in graph.node if n is not conv and all(n is not s for s, _ in split)]
        del graph.node[:]
        graph.node.extend(convs + nodes)
        used = {name for n in graph.node for name in n.input}
        for name in {conv.input[1], *(i for s, _ in split for i in s.input[1:])} - used:
            graph.initializer.remove(inits[name])
        return len(convs)
    return 0


def _stream_slices(conv, users: list, inits: dict) -> list[tuple[object, np.ndarray]]:
    """[(Slice node, weight rows)] when every user of a grouped, bias-free image convolution is
    a stride-n channel Slice; [] otherwise."""
    from onnx import helper, numpy_helper

    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    if len(conv.input) != 2 or conv.input[1] not in inits or attrs.get("group", 1) <= 1 or not users:
        return []
    rows = inits[conv.input[1]].dims[0]
    split = []
    for node in users:
        if node.op_type != "Slice" or len(node.input) != 5 or not all(i in inits for i in node.input[1:]):
            return []
        values = [numpy_helper.to_array(inits[i]).reshape(-1) for i in node.input[1:]]
        if any(v.size != 1 for v in values):
            return []
        start, end, axis, step = (int(v[0]) for v in values)
        channels = np.arange(start, min(end, rows), step)
        # exact only when slice k takes output k of every group: step = outputs per group
        if axis != 1 or step != rows // attrs["group"] or start >= step or len(channels) != attrs["group"]:
            return []
        split.append((node, channels))
    return split
