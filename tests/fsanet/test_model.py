import numpy as np
import pytest
import torch

from fsanet import model as M
from fsanet.keras_weights import stored_values


@pytest.mark.parametrize("name", sorted(M.VARIANTS))
def test_every_variant_runs_per_sample(name):
    torch.manual_seed(0)
    net = M.build(name)
    x = torch.rand(4, 3, 64, 64) * 255
    with torch.no_grad():
        batch = net(x)
        single = net(x[2:3])
    assert batch.shape == (4, 3)
    assert torch.isfinite(batch).all()
    # no sample may influence another (batch norm in eval mode, no batch-wide reductions)
    assert torch.allclose(batch[2:3], single, atol=1e-4)


@pytest.mark.parametrize("name", ["fsanet-1x1-capsule", "fsanet-wo-netvlad", "fsanet-var-metric", "ssrnet-md"])
def test_trace_is_a_flat_graph(name):
    net = M.build(name)
    program = torch.export.export(net, (torch.rand(2, 3, 64, 64) * 255,))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not {t for t in targets if "higher_order" in t}, targets  # no cond / while_loop / scan
    assert any("matmul" in t or "bmm" in t for t in targets) or name == "ssrnet-md"


def test_ssr_decode_by_hand():
    # one stage, all mass on the +1 bin, no shift or width change: +1/3 of the range
    one_hot = torch.tensor([[[[0.0, 0.0, 1.0]] * 3]])  # (B=1, S=1, A=3, bins=3)
    zero = torch.zeros(1, 1, 3)
    assert M.ssr_decode(one_hot, zero, zero, 1.0) == pytest.approx(torch.full((1, 3), 33.0))
    # a second stage on the -1 bin with eta=0.5 and delta=1 at stage 2:
    # -0.5 / (3 * 3 * (1 + 1)) * 99 = -2.75, added to the first stage's 33
    p = torch.cat([one_hot, one_hot.flip(-1)], 1)
    delta = torch.cat([zero, torch.ones(1, 1, 3)], 1)
    eta = torch.cat([zero, torch.full((1, 1, 3), 0.5)], 1)
    assert M.ssr_decode(p, delta, eta, 1.0) == pytest.approx(torch.full((1, 3), 33.0 - 2.75))


def test_fusion_is_the_mean_of_its_members():
    torch.manual_seed(1)
    members = [M.build(n) for n in M.FUSION_MEMBERS]
    fusion = M.Fusion(members).eval()
    x = torch.rand(3, 3, 64, 64) * 255
    with torch.no_grad():
        expected = sum(m(x) for m in members) / 3
        assert torch.allclose(fusion(x), expected, atol=1e-5)


def test_fusion_routes_members_in_any_order():
    # members with equal numbers of input capsules are routed together; the w/o member (192
    # capsules) between the other two puts the groups out of member order, which must be undone
    torch.manual_seed(2)
    members = [M.build(n) for n in ("fsanet-1x1-capsule", "fsanet-wo-capsule", "fsanet-var-capsule")]
    fusion = M.Fusion(members).eval()
    x = torch.rand(2, 3, 64, 64) * 255
    with torch.no_grad():
        assert torch.allclose(fusion(x), sum(m(x) for m in members) / 3, atol=1e-5)


def test_stream_pools_before_tanh_exactly_like_after():
    torch.manual_seed(3)
    stream = M.Stream(torch.nn.Tanh, torch.nn.MaxPool2d).eval()
    x = torch.rand(2, 3, 64, 64) * 255
    b, pool = stream.blocks, stream.pool
    with torch.no_grad():
        layer2 = pool(b[2](b[1](pool(b[0](x)))))  # the paper's order: activation, then pooling
        layer3 = pool(b[4](b[3](layer2)))
        for got, want in zip(stream(x), (layer2, layer3, b[6](b[5](layer3))), strict=True):
            assert torch.allclose(got, want, atol=1e-6)


def test_fusion_holds_the_released_number_of_values():
    # the paper's fusion: 238,471 + 238,406 + 694,563 values in the authors' .h5 files
    counts = [stored_values(M.build(n)) for n in M.FUSION_MEMBERS]
    assert counts == [238_471, 238_406, 694_563]
    fusion = M.Fusion([M.build(n) for n in M.FUSION_MEMBERS])
    assert stored_values(fusion) == 1_171_440
    assert 4.6e6 < stored_values(fusion) * 4 < 4.8e6  # about 4.7 MB in float32


def test_unknown_names_are_errors():
    with pytest.raises(ValueError, match="unknown variant"):
        M.build("fsanet-2x2-capsule")
    with pytest.raises(ValueError, match="aggregation"):
        M.FSANet(M.FSANetConfig(aggregation="attention"))


def test_config_round_trips():
    for cfg in M.VARIANTS.values():
        assert M.config_from_dict(cfg.to_dict()) == cfg
    assert np.isclose(M.ANGLE_RANGE, 99)
