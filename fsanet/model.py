"""FSA-Net (CVPR 2019) and SSR-Net-MD in PyTorch, read top-down.

Blocks first (separable convolutions, stage fusion, scoring, fine-grained structure mapping,
the three aggregations, the soft stagewise regression head), then the `FSANet` and `SSRNetMD`
modules, the fusion module, and last the named configurations of every released variant.

The computation follows the authors' Keras code so that their weights give their numbers:
batch norm with epsilon 1e-3, feature maps flattened in NHWC order wherever the Keras model
reshaped them, and the regression decoded exactly as their `SSRLayer`. The input is NCHW,
BGR, float32 in 0..255 with no normalisation. Every loop in `forward` runs a fixed number of
times, so tracing gives one flat graph (capsule routing is unrolled).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

KERAS_BN_EPS = 1e-3  # Keras' BatchNormalization default, not PyTorch's 1e-5
KERAS_EPS = 1e-7  # K.epsilon(), used by the capsule squash
TF_L2_EPS = 1e-12  # tf.nn.l2_normalize
ANGLE_RANGE = 99.0  # V in the authors' SSR layer: outputs span +-99 degrees


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------
class SeparableConvBlock(nn.Sequential):
    """Keras SeparableConv2D(3x3, same) -> BatchNorm -> activation."""

    def __init__(self, cin: int, cout: int, act: type[nn.Module]):
        super().__init__(
            nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1),
            nn.BatchNorm2d(cout, eps=KERAS_BN_EPS),
            act(),
        )


MONOTONIC = (nn.Tanh, nn.ReLU, nn.Sigmoid)  # non-decreasing: max(f(a), f(b)) == f(max(a, b))


class Stream(nn.Module):
    """One of the two streams: 16 / 32,32 / 64,64 / 128,128 channels, pooled between groups.

    Returns the features after the 2nd and 3rd pooling and the last block (16x16x32, 8x8x64,
    8x8x128 for a 64x64 input), which feed the three stages.
    """

    def __init__(self, act: type[nn.Module], pool: type[nn.Module]):
        super().__init__()
        widths = [(3, 16), (16, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)]
        self.blocks = nn.ModuleList(SeparableConvBlock(a, b, act) for a, b in widths)
        self.pool = pool(2)

    def forward(
        self, x: torch.Tensor, first: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`first`: the output of block 0's depthwise convolution, when a fusion computed it for
        all its streams at once (see `Fusion`); block 0 then starts at its pointwise one."""
        b = self.blocks
        x = self._pooled(b[0], x) if first is None else self._pooled(b[0], first, skip=1)
        layer2 = self._pooled(b[2], b[1](x))
        layer3 = self._pooled(b[4], b[3](layer2))
        layer4 = b[6](b[5](layer3))
        return layer2, layer3, layer4

    def _pooled(self, block: nn.Sequential, x: torch.Tensor, skip: int = 0) -> torch.Tensor:
        """pool(block(x)) from the block's layer `skip` on. Max pooling commutes with a
        non-decreasing activation (tanh here), so that stream pools first and evaluates its
        activation on a quarter of the values; average pooling does not commute with relu."""
        *linear, act = list(block)[skip:]
        for layer in linear:
            x = layer(x)
        if isinstance(self.pool, nn.MaxPool2d) and isinstance(act, MONOTONIC):
            return act(self.pool(x))
        return self.pool(act(x))


class StageFusion(nn.Module):
    """tanh(1x1 conv(s)) * relu(1x1 conv(x)), the fusion of the two streams at one stage.

    `pool` is where a 2x2 pooling goes: "after" the product (FSA-Net, stage 3 only), "before"
    it on each stream (SSR-Net-MD: max on s, average on x), or "none".
    """

    def __init__(self, cin: int, cout: int = 64, pool: str = "none"):
        super().__init__()
        self.conv_s = nn.Conv2d(cin, cout, 1)
        self.conv_x = nn.Conv2d(cin, cout, 1)
        self.pool = pool

    def forward(self, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        s = torch.tanh(self.conv_s(s))
        x = torch.relu(self.conv_x(x))
        if self.pool == "before":
            s, x = F.max_pool2d(s, 2), F.avg_pool2d(x, 2)
        out = s * x
        if self.pool == "after":
            out = F.avg_pool2d(out, 2)
        return out


def nhwc_flat(f: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C): the pixel order of a Keras Reshape on NHWC maps."""
    return f.flatten(2).transpose(1, 2)


def stage_pixels(feats: list[torch.Tensor]) -> torch.Tensor:
    """Three (B, C, H, W) stage maps -> (B, 3*H*W, C) pixels, stage-major as the Keras
    Concatenate of reshaped maps; stacking along H first makes it one transpose."""
    return nhwc_flat(torch.cat(feats, 2))


class Scoring(nn.Module):
    """Scoring function Phi: one score per pixel, for the pixels of all stages at once.

    "1x1": sigmoid of a learned 1x1 convolution; "var": variance across channels.
    """

    def __init__(self, kind: str, channels: int = 64):
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(channels, 1, 1) if kind == "1x1" else None

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, N, C) pixels -> (B, N) scores."""
        if self.conv is not None:
            w = self.conv.weight.view(1, -1)
            return torch.sigmoid(torch.matmul(pixels, w.t()) + self.conv.bias).squeeze(-1)
        return pixels.var(dim=-1, unbiased=False)


class FineGrainedStructureMapping(nn.Module):
    """S_k = C M_k: maps the 3 x 64 stage pixels to `num_primcaps` primary capsules.

    M_k (per stage, weights shared across stages) and C (from all scores) are sigmoid
    outputs of dense layers; each row of S_k is L1-normalised before pooling the pixels.
    """

    def __init__(self, scoring: str, num_primcaps: int, m_dim: int, pixels: int = 64):
        super().__init__()
        self.score = Scoring(scoring)
        self.m_dim = m_dim
        self.rows = num_primcaps // 3
        self.dense_m = nn.Linear(pixels, m_dim * 3 * pixels)
        self.dense_c = nn.Linear(3 * pixels, self.rows * m_dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3*P, C) pixels of the three stages -> (B, num_primcaps, C) primary capsules."""
        n = pixels.shape[0]
        scores = self.score(pixels).view(n, 3, -1)  # (B, stage, P)
        c = torch.sigmoid(self.dense_c(scores.flatten(1))).view(n, 1, self.rows, self.m_dim)
        m = torch.sigmoid(self.dense_m(scores)).view(n, 3, self.m_dim, -1)  # M_k of each stage
        s = torch.matmul(c, m)  # (B, stage, rows, 3P)
        caps = torch.matmul(s, pixels.unsqueeze(1)) / s.sum(-1, keepdim=True)
        return caps.flatten(1, 2)


def squash(v: torch.Tensor) -> torch.Tensor:
    norm2 = (v * v).sum(-1, keepdim=True)
    return v * (norm2 / (1 + norm2) / torch.sqrt(norm2 + KERAS_EPS))


class CapsuleAggregation(nn.Module):
    """Dynamic routing (Sabour et al.) with a fixed number of iterations, unrolled.

    `weight` keeps the Keras layout (out caps, in caps, out dim, in dim).
    """

    def __init__(self, in_caps: int, in_dim: int, num_caps: int, dim: int, routings: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_caps, in_caps, dim, in_dim))
        nn.init.xavier_uniform_(self.weight.view(num_caps * in_caps, dim * in_dim))
        self.routings = routings

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return route(self.predictions(u), self.routings)

    def predictions(self, u: torch.Tensor) -> torch.Tensor:
        """(B, i, k) input capsules -> u_hat (B, j, i, d), u_hat[b, j, i] = W[j, i] @ u[b, i]."""
        j, i, d, k = self.weight.shape
        # one batched matmul over the input capsules
        w = self.weight.permute(1, 3, 0, 2).reshape(i, k, j * d)
        u_hat = torch.matmul(u.transpose(0, 1), w)  # (i, B, j*d)
        return u_hat.reshape(i, -1, j, d).permute(1, 2, 0, 3)


def route(u_hat: torch.Tensor, routings: int) -> torch.Tensor:
    """Dynamic routing of predictions u_hat (..., j, i, d) -> output capsules (..., j, d); the
    leading dimensions (batch, and member in a fusion) route independently."""
    j = u_hat.shape[-3]
    v = squash(u_hat.sum(-2) / j)  # first iteration: zero logits, uniform coupling
    for _ in range(routings - 1):
        logits = (v.unsqueeze(-2) * u_hat).sum(-1)  # (..., j, i)
        c = torch.softmax(logits, dim=-2)
        v = squash((c.unsqueeze(-1) * u_hat).sum(-2))
    return v


def route_together(aggregations: list[CapsuleAggregation], caps: list[torch.Tensor]) -> torch.Tensor:
    """Several capsule layers (same output capsules and routings), each on its own input with
    its own weights; members with the same number of input capsules are routed as one batch.
    Returns (B, members, j, d) in member order."""
    u_hats = [a.predictions(u) for a, u in zip(aggregations, caps, strict=True)]
    groups: dict[int, list[int]] = {}
    for k, u in enumerate(u_hats):
        groups.setdefault(u.shape[2], []).append(k)
    routed = [route(torch.stack([u_hats[k] for k in ks], 1), aggregations[0].routings) for ks in groups.values()]
    order = [k for ks in groups.values() for k in ks]
    v = torch.cat(routed, 1)  # (B, members in group order, j, d)
    if order != sorted(order):
        v = v[:, [order.index(k) for k in range(len(order))]]
    return v


def l2_normalize(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x * torch.rsqrt(torch.clamp((x * x).sum(dim, keepdim=True), min=TF_L2_EPS))


class NetVLADAggregation(nn.Module):
    """NetVLAD (LOUPE's Keras layer) with a final projection to num_caps x dim."""

    def __init__(self, in_dim: int, num_caps: int, dim: int):
        super().__init__()
        self.assign = nn.Parameter(torch.randn(in_dim, num_caps) / in_dim**0.5)
        self.assign_bias = nn.Parameter(torch.randn(num_caps) / in_dim**0.5)
        self.centres = nn.Parameter(torch.randn(1, in_dim, num_caps) / in_dim**0.5)
        self.project = nn.Parameter(torch.randn(num_caps * in_dim, num_caps * dim) / num_caps**0.5)
        self.out_shape = (num_caps, dim)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        a = torch.softmax(torch.matmul(u, self.assign) + self.assign_bias, -1)  # (B, N, K)
        vlad = torch.matmul(a.transpose(1, 2), u).transpose(1, 2)  # (B, F, K)
        vlad = l2_normalize(vlad - a.sum(1, keepdim=True) * self.centres, 1)
        vlad = l2_normalize(vlad.flatten(1), 1)
        return torch.matmul(vlad, self.project).view(-1, *self.out_shape)


class MetricAggregation(nn.Module):
    """Two learned linear maps: over features (to `dim`), then over capsules (to `num_caps`)."""

    def __init__(self, in_caps: int, in_dim: int, num_caps: int, dim: int):
        super().__init__()
        self.feature_map = nn.Parameter(torch.empty(in_dim, dim))
        self.capsule_map = nn.Parameter(torch.empty(in_caps, num_caps))
        nn.init.xavier_uniform_(self.feature_map)
        nn.init.xavier_uniform_(self.capsule_map)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        f = torch.matmul(u, self.feature_map).transpose(1, 2)  # (B, dim, in_caps)
        return torch.matmul(f, self.capsule_map).transpose(1, 2)  # (B, num_caps, dim)


class SliceStageHead(nn.Module):
    """FSA-Net's per-stage head: a 16-d stage feature sliced into delta (0:4), eta (4:8) and
    the bin scores (8:16), each through its own dense layer."""

    def __init__(self, bins: int, num_angles: int = 3):
        super().__init__()
        self.delta = nn.Linear(4, num_angles)
        self.eta = nn.Linear(4, num_angles)
        self.bins = nn.Linear(8, bins * num_angles)

    def block(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The three dense layers as one (16, 2A + A*bins) block-diagonal map: constants at
        inference, so an exported graph does one matmul per stage instead of three."""
        w = torch.block_diag(self.delta.weight.t(), self.eta.weight.t(), self.bins.weight.t())
        return w, torch.cat([self.delta.bias, self.eta.bias, self.bins.bias])


def slice_heads(heads, feats: torch.Tensor):
    """(B, S, 16) stage features -> bin scores (B, S, A, bins), delta, eta (B, S, A)."""
    blocks = [h.block() for h in heads]
    w, b = torch.stack([w for w, _ in blocks]), torch.stack([b for _, b in blocks])
    out = torch.matmul(feats.transpose(0, 1), w).transpose(0, 1) + b  # (B, S, 2A + A*bins)
    a = heads[0].delta.out_features
    delta, eta, p = out.split([a, a, out.shape[-1] - 2 * a], -1)
    p = torch.relu(p).unflatten(-1, (a, -1))
    return p, torch.tanh(delta), torch.tanh(eta)


class DenseStageHead(nn.Module):
    """SSR-Net-MD's per-stage head: hidden tanh layers for delta and eta, relu bin scores."""

    def __init__(self, in_features: int, bins: int, num_angles: int = 3):
        super().__init__()
        self.delta_hidden = nn.Linear(in_features, 2 * num_angles)
        self.delta = nn.Linear(2 * num_angles, num_angles)
        self.eta_hidden = nn.Linear(in_features, 2 * num_angles)
        self.eta = nn.Linear(2 * num_angles, num_angles)
        self.bins = nn.Linear(in_features, bins * num_angles)
        self.shape = (num_angles, bins)

    def forward(self, f: torch.Tensor):
        p = torch.relu(self.bins(f)).view(-1, *self.shape)
        delta = torch.tanh(self.delta(torch.tanh(self.delta_hidden(f))))
        eta = torch.tanh(self.eta(torch.tanh(self.eta_hidden(f))))
        return p, delta, eta


def ssr_decode(p: torch.Tensor, delta: torch.Tensor, eta: torch.Tensor, lambda_d: float) -> torch.Tensor:
    """Soft stagewise regression as the released models decode it.

    p: bin scores (..., S, A, bins); delta, eta: (..., S, A) for S stages and A angles.
    Stage k has bins centred at -1, 0, +1 (for 3 bins) shifted by eta_k, and its width is
    divided by bins (1 + lambda_d delta_k) times the widths of all coarser stages.
    """
    bins = p.shape[-1]
    centres = torch.arange(bins, dtype=p.dtype, device=p.device) - bins // 2
    value = (p * centres).sum(-1) + eta * p.sum(-1)  # sum_i (c_i + eta) p_i
    scale = bins * (1 + lambda_d * delta)
    widths = [scale[..., 0, :]]
    for k in range(1, scale.shape[-2]):
        widths.append(widths[-1] * scale[..., k, :])
    return (value / torch.stack(widths, -2)).sum(-2) * ANGLE_RANGE


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FSANetConfig:
    """scoring: "1x1" | "var" | "none" (w/o); aggregation: "capsule" | "netvlad" | "metric"."""

    scoring: str = "1x1"
    aggregation: str = "capsule"
    num_caps: int = 3
    caps_dim: int = 16
    routings: int = 2
    m_dim: int = 5
    primcaps_fsm: int = 21  # capsules after the structure mapping (3 x 7)
    bins: int = 3
    lambda_d: float = 1.0
    image_size: int = 64

    @property
    def num_primcaps(self) -> int:
        """Primary capsules entering the aggregation: 3 stages x 64 pixels without scoring."""
        return 3 * (self.image_size // 8) ** 2 if self.scoring == "none" else self.primcaps_fsm

    def to_dict(self) -> dict:
        return {"arch": "fsanet", **asdict(self)}


@dataclass(frozen=True)
class SSRNetMDConfig:
    bins: int = 3
    lambda_d: float = 1.0
    image_size: int = 64

    def to_dict(self) -> dict:
        return {"arch": "ssrnet-md", **asdict(self)}


class FSANet(nn.Module):
    def __init__(self, config: FSANetConfig = FSANetConfig()):
        super().__init__()
        cfg = self.config = config
        if cfg.scoring not in ("1x1", "var", "none"):
            raise ValueError(f"unknown scoring {cfg.scoring!r}: use 1x1, var or none")
        self.x_stream = Stream(nn.ReLU, nn.AvgPool2d)
        self.s_stream = Stream(nn.Tanh, nn.MaxPool2d)
        self.fusion = nn.ModuleList([StageFusion(128), StageFusion(64), StageFusion(32, pool="after")])
        pixels = (cfg.image_size // 8) ** 2
        self.mapping = (
            None
            if cfg.scoring == "none"
            else FineGrainedStructureMapping(cfg.scoring, cfg.primcaps_fsm, cfg.m_dim, pixels)
        )
        n_in, caps = cfg.num_primcaps, (cfg.num_caps, cfg.caps_dim)
        if cfg.aggregation == "capsule":
            self.aggregation = CapsuleAggregation(n_in, 64, *caps, cfg.routings)
        elif cfg.aggregation == "netvlad":
            self.aggregation = NetVLADAggregation(64, *caps)
        elif cfg.aggregation == "metric":
            self.aggregation = MetricAggregation(n_in, 64, *caps)
        else:
            raise ValueError(f"unknown aggregation {cfg.aggregation!r}")
        self.heads = nn.ModuleList(SliceStageHead(cfg.bins) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 64, 64) BGR 0..255 -> (B, 3) yaw, pitch, roll in degrees."""
        return self.head(*self.stage_maps(x))

    def stage_maps(self, x: torch.Tensor, firsts=(None, None)) -> list[torch.Tensor]:
        """Image -> the three 8x8x64 stage maps; `firsts`: the streams' (x, s) block-0
        depthwise outputs when a fusion computed them."""
        xs, ss = self.x_stream(x, firsts[0]), self.s_stream(x, firsts[1])
        # stage 1 is the deepest map (layer4), stage 3 the shallowest (layer2)
        return [fuse(s, x) for fuse, s, x in zip(self.fusion, ss[::-1], xs[::-1], strict=True)]

    def head(self, *feats: torch.Tensor) -> torch.Tensor:
        """The three 8x8x64 stage maps -> angles: structure mapping, aggregation, regression."""
        return ssr_decode(*slice_heads(self.heads, self.aggregate(*feats)), self.config.lambda_d)

    def aggregate(self, *feats: torch.Tensor) -> torch.Tensor:
        """The three stage maps -> (B, 3 stages, 16) aggregated stage features."""
        return self.aggregation(self.primary_capsules(*feats))

    def primary_capsules(self, *feats: torch.Tensor) -> torch.Tensor:
        """The three stage maps -> (B, N, 64) capsules entering the aggregation."""
        pixels = stage_pixels(list(feats))  # (B, 3*64, 64)
        return pixels if self.mapping is None else self.mapping(pixels)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> (B, 3 stages, 16): everything before the regression head."""
        return self.aggregate(*self.stage_maps(x))


class SSRNetMD(nn.Module):
    """SSR-Net-MD, the paper's baseline: the same two streams, fused without aggregation."""

    def __init__(self, config: SSRNetMDConfig = SSRNetMDConfig()):
        super().__init__()
        self.config = config
        self.x_stream = Stream(nn.ReLU, nn.AvgPool2d)
        self.s_stream = Stream(nn.Tanh, nn.MaxPool2d)
        self.fusion = nn.ModuleList(StageFusion(c, pool="before") for c in (128, 64, 32))
        side = config.image_size // 8
        sizes = [(side // 2) ** 2 * 64, (side // 2) ** 2 * 64, side**2 * 64]
        self.heads = nn.ModuleList(DenseStageHead(n, config.bins) for n in sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs, ss = self.x_stream(x), self.s_stream(x)
        feats = [fuse(s, x) for fuse, s, x in zip(self.fusion, ss[::-1], xs[::-1], strict=True)]
        stages = [head(nhwc_flat(f).flatten(1)) for head, f in zip(self.heads, feats, strict=True)]
        p, delta, eta = (torch.stack(t, 1) for t in zip(*stages, strict=True))
        return ssr_decode(p, delta, eta, self.config.lambda_d)


class Fusion(nn.Module):
    """The average of several models' angles (FSA-Caps-Fusion averages three)."""

    # one grouped convolution of the image for every stream's first depthwise convolution
    # (faster in ONNX Runtime; a graph choice, not a weight: the arithmetic is the same)
    share_image_convolution = True

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("a fusion needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members = list(self.members)
        if not self._shared_head():
            return torch.stack([m(x) for m in members]).mean(0)
        # FSA-Net members share work where the arithmetic stays each member's own, for fewer,
        # larger operators in an exported graph: one depthwise convolution of the image for
        # all streams, one routing per group of capsule members with as many input capsules,
        # one batched regression head
        firsts = self._first_depthwise(x) if self.share_image_convolution else [(None, None)] * len(members)
        maps = [m.stage_maps(x, f) for m, f in zip(members, firsts, strict=True)]
        if self._shared_routing():
            caps = [m.primary_capsules(*f) for m, f in zip(members, maps, strict=True)]
            feats = route_together([m.aggregation for m in members], caps).flatten(1, 2)
        else:
            feats = torch.cat([m.aggregate(*f) for m, f in zip(members, maps, strict=True)], 1)
        p, delta, eta = slice_heads([h for m in members for h in m.heads], feats)  # feats (B, members*3, 16)
        split = (len(members), -1)
        p, delta, eta = p.unflatten(1, split), delta.unflatten(1, split), eta.unflatten(1, split)
        return ssr_decode(p, delta, eta, members[0].config.lambda_d).mean(1)

    def _first_depthwise(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every stream's block-0 depthwise 3x3 convolution of the image as one grouped
        convolution (output channels ordered colour-major), then each stream's 3 channels as a
        strided slice: one operator over the image instead of one per stream."""
        streams = [s for m in self.members for s in (m.x_stream, m.s_stream)]
        n = len(streams)
        w = torch.stack([s.blocks[0][0].weight for s in streams], 1).flatten(0, 1)  # (3*n, 1, 3, 3)
        out = F.conv2d(x, w, padding=1, groups=3)
        firsts = [out[:, k::n] for k in range(n)]
        return list(zip(firsts[0::2], firsts[1::2], strict=True))

    def _shared_routing(self) -> bool:
        aggs = [m.aggregation for m in self.members]
        return all(isinstance(a, CapsuleAggregation) for a in aggs) and (
            len({(a.weight.shape[0], a.weight.shape[2], a.routings) for a in aggs}) == 1
        )

    def _shared_head(self) -> bool:
        cfgs = [getattr(m, "config", None) for m in self.members]
        return all(isinstance(c, FSANetConfig) for c in cfgs) and len({(c.bins, c.lambda_d) for c in cfgs}) == 1


# --------------------------------------------------------------------------------------------
# Named configurations of the released models
# --------------------------------------------------------------------------------------------
_BASE = FSANetConfig()
VARIANTS: dict[str, FSANetConfig | SSRNetMDConfig] = {
    f"fsanet-{scoring}-{agg}": replace(_BASE, scoring=key, aggregation=agg)
    for agg in ("capsule", "netvlad", "metric")
    for scoring, key in (("1x1", "1x1"), ("var", "var"), ("wo", "none"))
}
VARIANTS["ssrnet-md"] = SSRNetMDConfig()
FUSION_MEMBERS = ("fsanet-1x1-capsule", "fsanet-var-capsule", "fsanet-wo-capsule")


def config_from_dict(d: dict) -> FSANetConfig | SSRNetMDConfig:
    d = dict(d)
    arch = d.pop("arch", None)
    if arch == "fsanet":
        return FSANetConfig(**d)
    if arch == "ssrnet-md":
        return SSRNetMDConfig(**d)
    raise ValueError(f"unknown architecture {arch!r}")


def build(config: FSANetConfig | SSRNetMDConfig | str) -> nn.Module:
    """A model from a configuration or a variant name (see `VARIANTS`)."""
    if isinstance(config, str):
        if config not in VARIANTS:
            raise ValueError(f"unknown variant {config!r}; choose one of {sorted(VARIANTS)}")
        config = VARIANTS[config]
    model = SSRNetMD(config) if isinstance(config, SSRNetMDConfig) else FSANet(config)
    return model.eval()


def variant_name(config: FSANetConfig | SSRNetMDConfig) -> str | None:
    return next((name for name, c in VARIANTS.items() if c == config), None)
