"""Signals on hand-made tiny networks, checked against closed forms."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from cosearch.errors import CosearchError
from cosearch.estimate import signals as S


def _two_layer(d=3, h=5, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, h, bias=False), nn.ReLU(), nn.Linear(h, 1, bias=False))


def test_ntk_matches_closed_form_two_layer_relu():
    net = _two_layer()
    x = S.random_inputs((6, 3), seed=1)
    W, v = net[0].weight.detach().double(), net[2].weight.detach().double()[0]
    X = x.double()
    pre = X @ W.T                      # (n, h)
    act = pre.clamp(min=0)
    gate = (pre > 0).double()
    # f = v . relu(W x):  df/dv = relu(Wx);  df/dW = (v * 1[Wx>0]) x^T
    K_hand = act @ act.T + (X @ X.T) * ((gate * v**2) @ gate.T)
    J = S.ntk_jacobian(net, x)
    assert J.shape == (6, 3 * 5 + 5)
    K = J.double() @ J.double().T
    np.testing.assert_allclose(K.numpy(), K_hand.numpy(), rtol=1e-5, atol=1e-6)
    eig = np.linalg.eigvalsh(K_hand.numpy())
    res = S.ntk_condition(J)
    assert not res.singular
    assert res.cond == pytest.approx(eig[-1] / eig[0], rel=1e-4)


def test_ntk_vmap_equals_per_sample_backward_with_frozen_batchnorm():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    x = S.random_inputs((5, 3, 6, 6), seed=2)
    S.freeze_batchnorm_to_batch_stats(net, x)
    J = S.ntk_jacobian(net, x)
    ps = [p for n, p in net.named_parameters() if n.endswith("weight")]
    rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(net(x[i:i + 1]).sum(), ps)]) for i in range(5)]
    torch.testing.assert_close(J, torch.stack(rows), rtol=1e-4, atol=1e-5)
    # frozen statistics reproduce the train-mode forward
    net2 = nn.Sequential(*[m for m in net])  # same modules
    y_eval = net2(x)
    net2.train()
    torch.testing.assert_close(y_eval, net2(x), rtol=1e-4, atol=1e-5)


def test_ntk_singular_is_flagged_not_nan():
    net = _two_layer()
    x = S.random_inputs((4, 3), seed=0)
    x[1] = x[0]  # duplicate sample -> rank-deficient kernel
    res = S.ntk_condition(S.ntk_jacobian(net, x))
    assert res.singular and res.cond == S.COND_MAX and math.isfinite(res.cond)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    res = S.ntk_condition(S.ntk_jacobian(net, S.random_inputs((4, 3), seed=0)))
    assert res.singular and res.cond == S.COND_MAX
    res = S.ntk_condition(torch.full((3, 4), float("nan")))
    assert res.singular and res.cond == S.COND_MAX


def test_linear_regions_of_1d_relu_net_with_known_breakpoints():
    # hidden units relu(x - b) with breakpoints 0.5, 1.5, 2.5 (and one outside at 9):
    # on [0, 3] the input line is cut into exactly 4 linear regions.
    net = nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.copy_(torch.tensor([-0.5, -1.5, -2.5, -9.0]))
    x = S.segment_inputs(torch.tensor([0.0]), torch.tensor([3.0]), 301)
    assert x.shape == (301, 1) and x[0, 0] == 0.0 and x[-1, 0] == 3.0
    assert S.count_linear_regions(S.activation_codes(net, x)) == 4
    # a sub-interval containing one breakpoint has 2 regions
    x = S.segment_inputs(torch.tensor([0.0]), torch.tensor([1.0]), 101)
    assert S.count_linear_regions(S.activation_codes(net, x)) == 2


def test_pattern_signals_need_a_piecewise_activation():
    with pytest.raises(CosearchError, match="no activation module of a registered piecewise type"):
        S.activation_codes(nn.Linear(2, 2), torch.zeros(3, 2))


def test_naswot_closed_form_and_singular():
    codes = torch.tensor([[1, 0, 1], [0, 1, 1], [1, 1, 0]], dtype=torch.bool)
    c = codes.double().numpy()
    K = c @ c.T + (1 - c) @ (1 - c).T  # 3 - hamming distance
    assert K[0, 1] == 1 and K[0, 0] == 3
    val, sing = S.naswot_logdet(codes)
    assert not sing and val == pytest.approx(math.log(abs(np.linalg.det(K))))
    val, sing = S.naswot_logdet(torch.tensor([[1, 0], [1, 0]], dtype=torch.bool))
    assert sing and val == -S.COND_MAX


def test_params_and_flops_by_formula():
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=True)
    assert S.count_params(conv) == 8 * 3 * 9 + 8
    # output 8 x 16 x 16, each a 3*3*3 dot product
    assert S.count_macs(conv, (1, 3, 32, 32)) == 8 * 16 * 16 * 27
    dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    assert S.count_macs(dw, (1, 8, 10, 10)) == 8 * 10 * 10 * 9
    lin = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    assert S.count_macs(lin, (7, 3, 2, 2)) == 60


def test_synflow_closed_form_linear_chain_and_bn_disabled():
    # f(x) = sum(|A| |B| 1) for a 2-layer linear net: synflow = sum |w * df/dw| = 2 * f(1)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3, bias=False), nn.BatchNorm1d(3), nn.Linear(3, 2, bias=False))
    A, B = net[0].weight.detach().abs().double(), net[2].weight.detach().abs().double()
    f1 = float((B @ A @ torch.ones(4, dtype=torch.float64)).sum())
    before = [p.clone() for p in net.parameters()]
    assert S.synflow(net, (1, 4)) == pytest.approx(2 * f1, rel=1e-10)
    for p, q in zip(before, net.parameters()):  # the caller's net is untouched
        assert torch.equal(p, q) and q.dtype == torch.float32


def test_swap_counts_distinct_sample_wise_patterns():
    # columns (unit patterns over 3 samples): 101, 011, 101, 000, 011 -> 3 distinct
    codes = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 0, 0, 1], [1, 1, 1, 0, 1]], dtype=torch.bool)
    assert S.swap_count(codes) == 3
    assert S.swap_count(torch.ones(20, 7, dtype=torch.bool)) == 1
    eye = torch.eye(9, dtype=torch.bool)  # 9 samples (> 8 bits packed): 9 distinct unit patterns
    assert S.swap_count(eye) == 9


def test_meco_min_eigenvalue_of_channel_correlation():
    # nn.Identity is the only module: MeCo = min eigenvalue of the channels' Pearson correlation
    a = torch.tensor([1.0, -1.0, 1.0, -1.0])
    b = torch.tensor([1.0, 1.0, -1.0, -1.0])  # uncorrelated with a -> corr = I -> 1
    x = torch.stack([a, b]).reshape(1, 2, 2, 2)
    assert S.meco(nn.Identity(), x) == pytest.approx(1.0)
    x = torch.stack([a, 2 * a + 3]).reshape(1, 2, 2, 2)  # perfectly correlated -> eigenvalues 0, 2
    assert S.meco(nn.Identity(), x) == pytest.approx(0.0, abs=1e-12)
    x = torch.stack([a, torch.full((4,), 5.0)]).reshape(1, 2, 2, 2)  # constant channel: NaN -> 0, min eig 0
    assert S.meco(nn.Identity(), x) == pytest.approx(0.0, abs=1e-12)
    # only the first `samples` samples count, averaged
    x2 = torch.cat([torch.stack([a, b]).reshape(1, 2, 2, 2), torch.stack([a, a]).reshape(1, 2, 2, 2)])
    assert S.meco(nn.Identity(), x2, samples=1) == pytest.approx(1.0)
    assert S.meco(nn.Identity(), x2, samples=2) == pytest.approx(0.5)
    with pytest.raises(CosearchError, match="4-D"):
        S.meco(nn.Linear(2, 2), torch.zeros(3, 2))
