"""The authors' Keras `.h5` files -> PyTorch models, reading arrays with h5py only.

The files also hold the Keras model config with marshalled Python code (Lambda layers); it
is never deserialised. The architecture is recognised from which layer groups hold weights,
and layers are matched by role: Keras numbers layers in creation order, so within one kind
(`separable_conv2d_N`, `dense_N`, ...) a lower number means created earlier in the authors'
model code (x stream before s stream, stage 1 before stage 3).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from fsanet import model as M
from fsanet.errors import WeightsError

# submodel group -> aggregation, as the authors named their nested Keras models
_AGGREGATIONS = {"ssr_Cap_model": "capsule", "ssr_Agg_model": "netvlad", "ssr_Metric_model": "metric"}


class KerasFile:
    """The weight arrays of one Keras 2 `.h5` file, grouped as {submodel: {layer: {name: array}}}."""

    def __init__(self, path: str | Path):
        import h5py

        self.path = Path(path)
        self.groups: dict[str, dict[str, dict[str, np.ndarray]]] = defaultdict(dict)
        try:
            with h5py.File(self.path, "r") as f:
                root = f["model_weights"] if "model_weights" in f else f
                if "layer_names" not in root.attrs:
                    raise WeightsError(f"{self.path}: not a Keras weights file (no 'layer_names')")
                root.visititems(self._collect)
        except OSError as e:
            raise WeightsError(f"{self.path}: cannot read as HDF5 ({e})") from e
        if not self.groups:
            raise WeightsError(f"{self.path}: the file holds no weights")

    def _collect(self, name: str, obj) -> None:
        if not hasattr(obj, "shape"):
            return
        parts = name.split("/")
        if len(parts) < 3:
            return
        group, layer, weight = parts[0], parts[-2], parts[-1].split(":")[0]
        # nested model: group is the submodel; flat model: group == layer
        sub = "" if group == layer else group
        self.groups[sub].setdefault(layer, {})[weight] = obj[()]

    def layers(self, sub: str, kind: str) -> list[tuple[str, dict[str, np.ndarray]]]:
        """Layers `kind_N` of a submodel, in creation order."""
        found = [(n, w) for n, w in self.groups.get(sub, {}).items() if re.fullmatch(rf"{kind}_\d+", n)]
        return sorted(found, key=lambda nw: int(nw[0].rsplit("_", 1)[1]))

    def layer(self, sub: str, name: str) -> dict[str, np.ndarray]:
        try:
            return self.groups[sub][name]
        except KeyError:
            where = f"{sub}/{name}" if sub else name
            raise WeightsError(f"{self.path}: layer {where!r} is missing") from None

    def detect(self) -> M.FSANetConfig | M.SSRNetMDConfig:
        """The configuration this file was trained with, from the layers it holds."""
        if "" in self.groups and self.layers("", "separable_conv2d"):
            return M.SSRNetMDConfig()
        aggs = [a for g, a in _AGGREGATIONS.items() if g in self.groups]
        if "ssr_G_model" not in self.groups or len(aggs) != 1:
            raise WeightsError(
                f"{self.path}: not an FSA-Net or SSR-Net-MD weights file (weight groups: {sorted(self.groups)})"
            )
        s_model = self.groups.get("ssr_S_model", {})
        if self.layers("ssr_S_model", "conv2d"):
            scoring = "1x1"
        elif s_model:
            scoring = "var"
        else:
            scoring = "none"
        return M.FSANetConfig(scoring=scoring, aggregation=aggs[0])


# ------------------------------------------------------------------------------------------
# Keras layer -> PyTorch tensors
# ------------------------------------------------------------------------------------------
def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _separable(prefix: str, w: dict) -> dict:
    return {
        f"{prefix}.0.weight": _t(w["depthwise_kernel"].transpose(2, 3, 0, 1)),
        f"{prefix}.1.weight": _t(w["pointwise_kernel"].transpose(3, 2, 0, 1)),
        f"{prefix}.1.bias": _t(w["bias"]),
    }


def _batchnorm(prefix: str, w: dict) -> dict:
    return {
        f"{prefix}.weight": _t(w["gamma"]),
        f"{prefix}.bias": _t(w["beta"]),
        f"{prefix}.running_mean": _t(w["moving_mean"]),
        f"{prefix}.running_var": _t(w["moving_variance"]),
    }


def _conv(prefix: str, w: dict) -> dict:
    return {f"{prefix}.weight": _t(w["kernel"].transpose(3, 2, 0, 1)), f"{prefix}.bias": _t(w["bias"])}


def _dense(prefix: str, w: dict) -> dict:
    return {f"{prefix}.weight": _t(w["kernel"].T), f"{prefix}.bias": _t(w["bias"])}


def _need(kf: KerasFile, sub: str, kind: str, count: int) -> list[dict]:
    found = kf.layers(sub, kind)
    if len(found) != count:
        where = f"{sub}/" if sub else ""
        raise WeightsError(
            f"{kf.path}: expected {count} {where}{kind}_N layers, found {len(found)} ({[n for n, _ in found]})"
        )
    return [w for _, w in found]


def _trunk(kf: KerasFile, sub: str) -> dict:
    """Both streams and the three stage fusions (shared by FSA-Net and SSR-Net-MD)."""
    sd = {}
    seps = _need(kf, sub, "separable_conv2d", 14)
    bns = _need(kf, sub, "batch_normalization", 14)
    for i in range(14):
        stream, block = ("x_stream", i) if i < 7 else ("s_stream", i - 7)
        sd |= _separable(f"{stream}.blocks.{block}", seps[i])
        sd |= _batchnorm(f"{stream}.blocks.{block}.2", bns[i])
    convs = _need(kf, sub, "conv2d", 6)
    for stage in range(3):
        sd |= _conv(f"fusion.{stage}.conv_s", convs[2 * stage])
        sd |= _conv(f"fusion.{stage}.conv_x", convs[2 * stage + 1])
    return sd


def _fsanet_state(kf: KerasFile, cfg: M.FSANetConfig) -> dict:
    sd = _trunk(kf, "ssr_G_model")
    if cfg.scoring != "none":
        if cfg.scoring == "1x1":
            sd |= _conv("mapping.score.conv", _need(kf, "ssr_S_model", "conv2d", 1)[0])
        dense_m, dense_c = _need(kf, "ssr_S_model", "dense", 2)
        sd |= _dense("mapping.dense_m", dense_m) | _dense("mapping.dense_c", dense_c)
    agg_group = next(g for g, a in _AGGREGATIONS.items() if a == cfg.aggregation)
    if cfg.aggregation == "capsule":
        sd["aggregation.weight"] = _t(kf.layer(agg_group, "caps")["W"])
    elif cfg.aggregation == "netvlad":
        w = _need(kf, agg_group, "net_vlad", 1)[0]
        sd |= {
            "aggregation.assign": _t(w["kernel_W1"]),
            "aggregation.assign_bias": _t(w["kernel_B1"]),
            "aggregation.centres": _t(w["kernel_W2"]),
            "aggregation.project": _t(w["kernel_H1"]),
        }
    else:
        k1, k2 = _need(kf, agg_group, "mat_mul_layer", 2)
        sd |= {"aggregation.feature_map": _t(k1["kernel_type1"]), "aggregation.capsule_map": _t(k2["kernel_type2"])}
    f_group = "ssr_F_Cap_model" if cfg.aggregation == "capsule" else "ssr_F_model"
    bins = _need(kf, f_group, "dense", 3)
    for k in range(3):
        sd |= _dense(f"heads.{k}.delta", kf.layer(f_group, f"delta_s{k + 1}"))
        sd |= _dense(f"heads.{k}.eta", kf.layer(f_group, f"local_delta_stage{k + 1}"))
        sd |= _dense(f"heads.{k}.bins", bins[k])
    return sd


def _ssrnet_state(kf: KerasFile) -> dict:
    sd = _trunk(kf, "")
    dense = _need(kf, "", "dense", 9)
    for k in range(3):
        hidden_delta, hidden_eta, bins = dense[3 * k : 3 * k + 3]
        sd |= _dense(f"heads.{k}.delta_hidden", hidden_delta)
        sd |= _dense(f"heads.{k}.eta_hidden", hidden_eta)
        sd |= _dense(f"heads.{k}.bins", bins)
        sd |= _dense(f"heads.{k}.delta", kf.layer("", f"delta_s{k + 1}"))
        sd |= _dense(f"heads.{k}.eta", kf.layer("", f"local_delta_stage{k + 1}"))
    return sd


def load_keras(path: str | Path) -> torch.nn.Module:
    """A model with the weights of one of the authors' `.h5` files, in eval mode."""
    kf = KerasFile(path)
    cfg = kf.detect()
    sd = _ssrnet_state(kf) if isinstance(cfg, M.SSRNetMDConfig) else _fsanet_state(kf, cfg)
    bad = sorted({k.rsplit(".", 1)[0] for k, v in sd.items() if not torch.isfinite(v).all()})
    if bad:
        raise WeightsError(
            f"{kf.path}: {len(bad)} layers hold NaN or infinite weights ({', '.join(bad[:4])}, ...); "
            "the file cannot give angles: use another release of this variant"
        )
    model = M.build(cfg)
    target = model.state_dict()
    for key, value in target.items():
        if key.endswith("num_batches_tracked"):
            sd.setdefault(key, torch.zeros_like(value))
        elif key not in sd:
            raise WeightsError(f"{kf.path}: no weights for {key} of {M.variant_name(cfg)}")
        elif sd[key].shape != value.shape:
            raise WeightsError(
                f"{kf.path}: {key} has shape {tuple(sd[key].shape)} in the file, "
                f"{tuple(value.shape)} expected for {M.variant_name(cfg)}"
            )
    model.load_state_dict(sd, strict=True)
    return model.eval()


def stored_values(model: torch.nn.Module) -> int:
    """Values a Keras file stores for this model: parameters plus batch-norm statistics."""
    buffers = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    return sum(p.numel() for p in model.parameters()) + buffers
