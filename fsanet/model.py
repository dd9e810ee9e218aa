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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = self.blocks
        x = self.pool(b[0](x))
        layer2 = self.pool(b[2](b[1](x)))
        layer3 = self.pool(b[4](b[3](layer2)))
        layer4 = b[6](b[5](layer3))
        return layer2, layer3, layer4


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
    b, c, h, w = f.shape
    return f.permute(0, 2, 3, 1).reshape(b, h * w, c)


class Scoring(nn.Module):
    """Scoring function Phi: one score per pixel of an 8x8x64 stage map (B, 64 pixels).

    "1x1": sigmoid of a learned 1x1 convolution; "var": variance across channels.
    """

    def __init__(self, kind: str, channels: int = 64):
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(channels, 1, 1) if kind == "1x1" else None

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            return torch.sigmoid(self.conv(f)).flatten(1)
        return f.var(dim=1, unbiased=False).flatten(1)


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

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        n = feats[0].shape[0]
        scores = [self.score(f) for f in feats]
        c = torch.sigmoid(self.dense_c(torch.cat(scores, 1))).view(n, self.rows, self.m_dim)
        pixels = torch.cat([nhwc_flat(f) for f in feats], 1)
        caps = []
        for score in scores:
            m = torch.sigmoid(self.dense_m(score)).view(n, self.m_dim, -1)
            s = torch.matmul(c, m)
            caps.append(torch.matmul(s, pixels) / s.sum(-1, keepdim=True))
        return torch.cat(caps, 1)


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
        j, i, d, k = self.weight.shape
        # u_hat[b, j, i] = W[j, i] @ u[b, i], as one batched matmul over the input capsules
        w = self.weight.permute(1, 3, 0, 2).reshape(i, k, j * d)
        u_hat = torch.matmul(u.transpose(0, 1), w)  # (i, B, j*d)
        u_hat = u_hat.reshape(i, -1, j, d).permute(1, 2, 0, 3)  # (B, j, i, d)
        v = squash(u_hat.sum(2) / j)  # first iteration: zero logits, uniform coupling
        for _ in range(self.routings - 1):
            logits = (v.unsqueeze(2) * u_hat).sum(-1)
            c = torch.softmax(logits, dim=1)
            v = squash((c.unsqueeze(-1) * u_hat).sum(2))
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
        self.shape = (num_angles, bins)

    def forward(self, f: torch.Tensor):
        p = torch.relu(self.bins(f[:, 8:16])).view(-1, *self.shape)
        return p, torch.tanh(self.delta(f[:, 0:4])), torch.tanh(self.eta(f[:, 4:8]))


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


def ssr_decode(stages, lambda_d: float) -> torch.Tensor:
    """Soft stagewise regression as the released models decode it.

    Stage k has bins centred at -1, 0, +1 (for 3 bins) shifted by eta_k, and its width is
    divided by s_k (1 + lambda_d delta_k) times the widths of all coarser stages.
    """
    out, width = 0.0, 1.0
    for p, delta, eta in stages:
        bins = p.shape[-1]
        centres = torch.arange(bins, dtype=p.dtype, device=p.device) - bins // 2
        width = width * (bins * (1 + lambda_d * delta))
        out = out + ((centres + eta.unsqueeze(-1)) * p).sum(-1) / width
    return out * ANGLE_RANGE


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
        xs, ss = self.x_stream(x), self.s_stream(x)
        # stage 1 is the deepest map (layer4), stage 3 the shallowest (layer2)
        feats = [fuse(s, x) for fuse, s, x in zip(self.fusion, ss[::-1], xs[::-1], strict=True)]
        if self.mapping is None:
            primcaps = torch.cat([nhwc_flat(f) for f in feats], 1)
        else:
            primcaps = self.mapping(feats)
        agg = self.aggregation(primcaps)  # (B, 3 stages, 16)
        stages = [head(agg[:, k]) for k, head in enumerate(self.heads)]
        return ssr_decode(stages, self.config.lambda_d)


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
        return ssr_decode(stages, self.config.lambda_d)


class Fusion(nn.Module):
    """The average of several models' angles (FSA-Caps-Fusion averages three)."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("a fusion needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


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
