"""`fsanet debug`: where an INT8 ONNX loses its angles, layer by layer.

Two measurements, both against the float ONNX the INT8 file was made from, on the same faces:
- every intermediate tensor: the INT8 and float graphs run with their intermediates exposed as
  outputs and matched by tensor name (the Q/DQ rewrite keeps the names of the tensors it
  quantizes; Q/DQ outputs themselves are not compared), each reported as SNR, cosine similarity
  and max abs error; a node's loss is its output's SNR below the worst of its inputs' (the error
  it adds itself), and the first node that loses `JUMP_DB` or more on top of an error it already
  receives is where the error jumps;
- each quantized layer alone: the float graph with only that node's quantizers (the Q/DQ pairs
  and int8 weights on its inputs, and the constants the quantizer changed, e.g. NNCF's bias
  correction, copied from the INT8 file) inserted, and the angles' drift from the float graph:
  what that layer contributes to the final drift, in degrees.
Polygraphy's `debug precision` and the LiteRT quantizer's debugger do the first in tensor terms;
this one ends in degrees of head pose. The graph order is the float graph's node order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fsanet.errors import DataError

JUMP_DB = 6.0  # a node that loses this much SNR on its own at least doubles the error it receives
SNR_CAP_DB = 100.0  # identical tensors: the loss of their consumers is measured from here
QDQ = ("QuantizeLinear", "DequantizeLinear")
BATCH = 32


@dataclass
class TensorError:
    """Running sums over faces for one tensor: SNR, mean cosine, max abs error."""

    signal: float = 0.0
    noise: float = 0.0
    cosines: list = field(default_factory=list)
    max_abs: float = 0.0

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        r, g = ref.reshape(len(ref), -1).astype(np.float64), got.reshape(len(got), -1).astype(np.float64)
        e = g - r
        self.signal += float((r * r).sum())
        self.noise += float((e * e).sum())
        norms = np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1)
        dots = (r * g).sum(axis=1)
        self.cosines += np.where(norms > 0, dots / np.where(norms > 0, norms, 1), 1.0).tolist()
        self.max_abs = max(self.max_abs, float(np.abs(e).max()) if e.size else 0.0)

    def snr_db(self) -> float:
        if self.noise == 0:
            return float("inf")
        if self.signal == 0:
            return float("-inf")
        return 10 * np.log10(self.signal / self.noise)

    def record(self) -> dict:
        return {"snr_db": self.snr_db(), "cosine": float(np.mean(self.cosines)), "max_abs": self.max_abs}


def load_pair(int8_path: str | Path, float_path: str | Path):
    """The INT8 Q/DQ model and the float model in the form it was quantized from (a fusion's
    shared image convolution split into streams, as export/quantize.py does first)."""
    import onnx
    from fsanet.export.split_depthwise import split_image_depthwise

    from fsanet.manifest import read_sidecar

    for path in (int8_path, float_path):  # as every runtime does: a file changed since export is refused
        read_sidecar(path)
    int8, ref = onnx.load(str(int8_path)), onnx.load(str(float_path))
    if not any(n.op_type in QDQ for n in int8.graph.node):
        raise DataError(f"{int8_path}: no QuantizeLinear/DequantizeLinear nodes; give the INT8 Q/DQ ONNX (-int8.onnx)")
    if any(n.op_type in QDQ for n in ref.graph.node):
        raise DataError(f"{float_path}: --reference has Q/DQ nodes; give the float ONNX the INT8 file was made from")
    split_image_depthwise(ref)
    return int8, ref


def compared_tensors(int8, ref) -> list[str]:
    """Float tensors computed by both graphs (not by Q/DQ), in the float graph's order."""
    import onnx

    ours = {o for n in int8.graph.node if n.op_type not in QDQ for o in n.output}
    typed = onnx.shape_inference.infer_shapes(ref)
    floats = {v.name for v in typed.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    floats |= {o.name for o in ref.graph.output}
    return [o for n in ref.graph.node for o in n.output if o in ours and o in floats]


def exposed(model, names: list[str]) -> bytes:
    """`model` with `names` added as graph outputs (after its own), serialised."""
    import onnx
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    m.graph.output.extend(
        helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names if n not in have
    )
    return m.SerializeToString()


def _session(model_bytes: bytes):
    from fsanet.runtimes.onnxruntime import create_session, import_ort

    ort = import_ort()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    return create_session(ort, model_bytes, options, ["CPUExecutionProvider"], denormals_as_zero=True)


def _run(model_bytes: bytes, x: np.ndarray, names: list[str] | None = None):
    """Run in batches; yields (batch slice, {name: array}) for `names`, or the angles."""
    session, env = _session(model_bytes)
    wanted = names or [session.get_outputs()[0].name]
    feed = session.get_inputs()[0].name
    for i in range(0, len(x), BATCH):
        with env:
            values = session.run(wanted, {feed: x[i : i + BATCH]})
        yield slice(i, i + BATCH), dict(zip(wanted, values, strict=True))


def angles(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    return np.concatenate([next(iter(v.values())) for _, v in _run(model_bytes, x)])


def tensor_errors(int8, ref, x: np.ndarray, names: list[str]) -> dict[str, dict]:
    """Per compared tensor: SNR (dB), mean cosine and max abs error of INT8 against float."""
    errors = {n: TensorError() for n in names}
    got = _run(exposed(int8, names), x, names)
    for (_, ref_values), (_, int8_values) in zip(_run(exposed(ref, names), x, names), got, strict=True):
        for n in names:
            errors[n].add(ref_values[n], int8_values[n])
    return {n: e.record() for n, e in errors.items()}


def _source(name: str, producers: dict) -> str:
    """The tensor a Q/DQ chain quantizes (its first input before any Q/DQ)."""
    node = producers.get(name)
    while node is not None and node.op_type in QDQ:
        name = node.input[0]
        node = producers.get(name)
    return name


def node_losses(int8, records: dict[str, dict]) -> dict[str, dict]:
    """Per non-Q/DQ node of the INT8 graph with a compared output: the worst SNR among its
    compared inputs (traced back through Q/DQ; the graph input and constants are exact), its
    output's SNR, and the loss between them in dB, capped at SNR_CAP_DB."""
    producers = {o: n for n in int8.graph.node for o in n.output}
    out = {}
    for node in int8.graph.node:
        if node.op_type in QDQ or node.output[0] not in records:
            continue
        inputs = [records[s]["snr_db"] for s in (_source(i, producers) for i in node.input) if s in records]
        before = min([SNR_CAP_DB, *inputs])
        after = min(records[node.output[0]]["snr_db"], SNR_CAP_DB)
        out[node.output[0]] = {"input_snr_db": before, "lost_db": before - after}
    return out


def quantized_layers(int8) -> list:
    """Non-Q/DQ nodes of the INT8 graph with at least one input from a DequantizeLinear."""
    producers = {o: n for n in int8.graph.node for o in n.output}
    return [
        n
        for n in int8.graph.node
        if n.op_type not in QDQ and any(getattr(producers.get(i), "op_type", "") == "DequantizeLinear" for i in n.input)
    ]


def alone(int8, ref, layer):
    """The float graph with only `layer`'s input quantizers inserted; None when the float graph has
    no node of that name or lacks a tensor the quantizers read."""
    import onnx

    producers = {o: n for n in int8.graph.node for o in n.output}
    inits = {i.name: i for i in int8.graph.initializer}
    m = onnx.ModelProto()
    m.CopyFrom(ref)
    nodes = list(m.graph.node)
    target = next((k for k, n in enumerate(nodes) if n.name == layer.name), None)
    known = {o for n in nodes for o in n.output} | {i.name for i in m.graph.input}
    known |= {i.name for i in m.graph.initializer}
    if target is None:
        return None
    inserted, have_init = [], {i.name for i in m.graph.initializer}
    for k, name in enumerate(layer.input):
        chain, node = [], producers.get(name)
        while node is not None and node.op_type in QDQ:
            chain.insert(0, node)
            node = producers.get(node.input[0])
        if not chain:
            if name in inits:  # a constant the quantizer changed (NNCF's bias correction) comes along
                nodes[target].input[k] = _constant_of(m, inits[name], have_init)
            continue
        if name in known or any(name in q.output for q in inserted):  # already quantized there (x * x)
            nodes[target].input[k] = name
            continue
        if chain[0].input[0] not in known and chain[0].input[0] not in inits:
            return None
        for q in chain:
            for i in q.input[1:] + q.input[:1]:
                if i in inits and i not in have_init:
                    m.graph.initializer.append(inits[i])
                    have_init.add(i)
            copy = onnx.NodeProto()
            copy.CopyFrom(q)
            copy.name = f"alone/{q.name}/{k}"
            inserted.append(copy)
        nodes[target].input[k] = name
    del m.graph.node[:]
    m.graph.node.extend(nodes[:target] + inserted + nodes[target:])
    return m


def _constant_of(model, init, have: set, tag: str = "int8") -> str:
    """The name under which `model` holds the constant `init` (of the other graph): its own when
    the values are the same, else a copy added as `<name>/<tag>`."""
    from onnx import numpy_helper

    own = next((i for i in model.graph.initializer if i.name == init.name), None)
    if own is not None and np.array_equal(numpy_helper.to_array(own), numpy_helper.to_array(init)):
        return init.name
    name = f"{init.name}/{tag}"
    if name not in have:
        model.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(init), name))
        have.add(name)
    return name


def with_float_layers(int8, ref, names: set[str]):
    """The INT8 graph with the nodes named `names` computed as in the float graph: their inputs
    and constants taken from it (no quantizers, float weights, the float bias). What a recipe
    that keeps those layers float would give, without quantizing again."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(int8)
    floats = {n.name: n for n in ref.graph.node}
    have = {i.name for i in m.graph.initializer}
    ref_inits = {i.name: i for i in ref.graph.initializer}
    for node in m.graph.node:
        if node.name not in names:
            continue
        source = floats[node.name]
        del node.input[:]
        node.input.extend(_constant_of(m, ref_inits[i], have, "float") if i in ref_inits else i for i in source.input)
    return m


def search_float_layers(int8, ref, x: np.ndarray, base: np.ndarray, ranked: list[str], max_drift: float, progress=None):
    """Keep layers float one at a time, most harmful alone first (`ranked`), until the mean drift
    from the float angles `base` holds `max_drift`. Returns (the layers, trajectory); the layers
    are None when even all of `ranked` float misses it."""
    from fsanet.accuracy import drift

    trajectory, kept = [], []
    for name in [None, *ranked]:
        if name is not None:
            kept.append(name)
        d = drift(angles(with_float_layers(int8, ref, set(kept)).SerializeToString(), x), base)
        trajectory.append({"float_layers": len(kept), "added": name, "drift_mean": d["mean"], "drift_max": d["max"]})
        _tick(progress)
        if d["mean"] <= max_drift:
            return kept, trajectory
    return None, trajectory


def debug_onnx(
    int8_path, float_path, crops: np.ndarray, alone_faces: int | None = None, progress=None, max_drift=None
) -> dict:
    """The layer-wise drift of an INT8 ONNX against its float ONNX on `crops` (BGR official
    crops); the layer-alone contributions on the first `alone_faces` of them (all by default);
    with `max_drift`, the fewest layers (most harmful first) to keep float for that mean drift."""
    from fsanet import runtimes
    from fsanet.accuracy import drift

    with runtimes.open(int8_path) as rt:
        fmt = rt.input_format
    x = fmt.prepare(crops)
    int8, ref = load_pair(int8_path, float_path)
    names = compared_tensors(int8, ref)
    if not names:
        raise DataError(f"{int8_path}: shares no tensor name with {float_path}; was it made from that file?")
    records = tensor_errors(int8, ref, x, names)
    _tick(progress)
    losses = node_losses(int8, records)
    ref_bytes = ref.SerializeToString()
    base = angles(ref_bytes, x)
    total = drift(angles(int8.SerializeToString(), x), base)
    xa = x[: alone_faces or len(x)]
    contributions = {}
    for layer in quantized_layers(int8):
        model = alone(int8, ref, layer)
        contributions[layer.name] = (
            None if model is None else drift(angles(model.SerializeToString(), xa), base[: len(xa)])
        )
        _tick(progress)
    result = _result(int8, ref, records, losses, contributions, total, len(x), len(xa))
    if max_drift is not None:
        ranked = [c["node"] for c in result["all_contributors"]]
        layers, trajectory = search_float_layers(int8, ref, x, base, ranked, max_drift, progress)
        result["recipe"] = {"max_drift": max_drift, "float_layers": layers, "trajectory": trajectory}
    return result


def _tick(progress) -> None:
    if progress is not None:
        progress.update(1)


def _result(int8, ref, records, losses, contributions, total, faces, alone_faces) -> dict:
    by_output = {n.output[0]: n for n in int8.graph.node if n.op_type not in QDQ}
    layers = []
    for name, record in records.items():
        node = by_output.get(name)
        row = {"tensor": name, "node": getattr(node, "name", ""), "op_type": getattr(node, "op_type", ""), **record}
        row.update(losses.get(name, {}))
        if node is not None and node.name in contributions:
            row["quantized"] = True
            row["alone_drift"] = contributions[node.name]
        layers.append(row)
    # a node fed by exact tensors only (the image, constants) sets the error's starting level;
    # a jump is a node that loses JUMP_DB on top of the error it already receives
    receives = [r for r in layers if r.get("input_snr_db", SNR_CAP_DB) < SNR_CAP_DB]
    first = next((r for r in receives if r["lost_db"] >= JUMP_DB), None)
    worst = max(layers, key=lambda r: r.get("lost_db", float("-inf")), default=None)
    ranked = sorted((r for r in layers if r.get("alone_drift")), key=lambda r: r["alone_drift"]["mean"], reverse=True)
    return {
        "faces": faces,
        "alone_faces": alone_faces,
        "jump_db": JUMP_DB,
        "drift": total,
        "layers": layers,
        "first_jump": first and first["node"],
        "largest_loss": worst and worst["node"],
        "top_contributors": [{"node": r["node"], "op_type": r["op_type"], **r["alone_drift"]} for r in ranked[:10]],
        "all_contributors": [{"node": r["node"], "op_type": r["op_type"], **r["alone_drift"]} for r in ranked],
        "unmatched_layers": sorted(k for k, v in contributions.items() if v is None),
    }
