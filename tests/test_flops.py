"""codecsep.flops: counts agree with analytic MACs for convolutions, linears and attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from codecsep.flops import (
    count_flops,
    count_macs,
    count_parameters,
    macs_per_second,
)

SR = 16_000


@pytest.mark.parametrize("stride, padding, groups", [(1, 2, 1), (2, 0, 1), (1, 1, 4)])
def test_conv1d_matches_analytic_count(stride, padding, groups):
    c_in, c_out, k, t = 8, 12, 5, 321
    conv = nn.Conv1d(c_in, c_out, k, stride=stride, padding=padding, groups=groups)
    x = torch.randn(1, c_in, t)
    t_out = (t + 2 * padding - k) // stride + 1
    assert conv(x).shape[-1] == t_out
    # one MAC per weight per output frame; bias adds are elementwise and not counted
    assert count_macs(conv, x) == c_out * (c_in // groups) * k * t_out
    assert count_flops(conv, x) == 2 * count_macs(conv, x)


def test_linear_matches_analytic_count():
    linear = nn.Linear(10, 20)
    assert count_macs(linear, torch.randn(3, 7, 10)) == 3 * 7 * 10 * 20


def test_sdpa_matches_analytic_count():
    b, h, l, s, e = 2, 4, 50, 30, 16
    q, k, v = torch.randn(b, h, l, e), torch.randn(b, h, s, e), torch.randn(b, h, s, e)
    expected = 2 * b * h * l * s * e  # Q @ K^T and softmax(.) @ V: l*s*e MACs each per head
    assert count_macs(F.scaled_dot_product_attention, q, k, v) == expected
    mask = torch.rand(l, s) > 0.5
    assert count_macs(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)) == expected


def test_tiny_attention_module_matches_analytic_count():
    class TinyAttention(nn.Module):
        def __init__(self, dim: int, heads: int):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(dim, 3 * dim)
            self.out = nn.Linear(dim, dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D)
            b, l, d = x.shape
            q, k, v = self.qkv(x).reshape(b, l, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(q, k, v)
            return self.out(y.transpose(1, 2).reshape(b, l, d))

    d, length = 32, 40
    expected = length * d * 3 * d + length * d * d + 2 * length * length * d
    assert count_macs(TinyAttention(d, heads=4), torch.randn(1, length, d)) == expected


@pytest.mark.parametrize("need_weights", [False, True])
def test_multihead_attention_fast_path_is_counted(need_weights):
    d, length = 32, 50
    mha = nn.MultiheadAttention(d, 4, batch_first=True).eval()  # eval + no_grad: fused fast path
    x = torch.randn(1, length, d)
    expected = length * d * 3 * d + length * d * d + 2 * length * length * d
    assert count_macs(mha, x, x, x, need_weights=need_weights) == expected
    assert torch.backends.mha.get_fastpath_enabled()  # restored after counting


def test_transformer_layer_is_counted():
    d, ff, length = 32, 64, 50
    layer = nn.TransformerEncoderLayer(d, 4, ff, batch_first=True).eval()
    attention = length * d * 4 * d + 2 * length * length * d
    assert count_macs(layer, torch.randn(1, length, d)) == attention + 2 * length * d * ff


def test_counting_does_not_change_outputs_or_grad_mode():
    conv = nn.Conv1d(1, 4, 3, padding=1)
    x = torch.randn(1, 1, 100)
    before = conv(x)
    count_macs(conv, x)
    assert torch.equal(conv(x), before) and torch.is_grad_enabled()


# ---------------------------------------------------------------------------------------------
# macs_per_second
# ---------------------------------------------------------------------------------------------
def test_macs_per_second_from_inputs():
    conv = nn.Conv1d(1, 8, 4, stride=2)
    n = 2 * SR  # two seconds of audio
    per_call = 8 * 4 * ((n - 4) // 2 + 1)
    assert macs_per_second(conv, torch.randn(1, 1, n), seconds=2.0) == per_call / 2
    assert macs_per_second(conv, (torch.randn(1, 1, n),), seconds=2.0) == per_call / 2
    assert macs_per_second(conv, {"input": torch.randn(1, 1, n)}, seconds=2.0) == per_call / 2


def test_macs_per_second_from_input_function():
    conv = nn.Conv1d(1, 8, 4, stride=2)
    seen = []

    def make_inputs(n_samples: int):
        seen.append(n_samples)
        return (torch.randn(1, 1, n_samples),)

    rate = macs_per_second(conv, make_inputs, seconds=0.5, sample_rate=SR)
    assert seen == [SR // 2]
    assert rate == 8 * 4 * ((SR // 2 - 4) // 2 + 1) / 0.5


def test_macs_per_second_accepts_methods():
    class Codec(nn.Module):
        def __init__(self):
            super().__init__()
            self.down = nn.Conv1d(1, 16, 320, stride=320)

        def encode(self, wav):
            return self.down(wav)

    codec = Codec()
    assert macs_per_second(codec.encode, torch.randn(1, 1, SR)) == 16 * 320 * 50


def test_macs_per_second_argument_errors():
    conv = nn.Conv1d(1, 1, 1)
    with pytest.raises(ValueError, match="sample_rate"):
        macs_per_second(conv, lambda n: torch.randn(1, 1, n), seconds=1.0)
    with pytest.raises(ValueError, match="positive"):
        macs_per_second(conv, torch.randn(1, 1, 10), seconds=0)


# ---------------------------------------------------------------------------------------------
# Parameters and formatting
# ---------------------------------------------------------------------------------------------
def test_count_parameters():
    model = nn.Sequential(nn.Linear(10, 20), nn.Conv1d(20, 4, 3))
    assert count_parameters(model) == 10 * 20 + 20 + 20 * 4 * 3 + 4
    model[0].requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 20 * 4 * 3 + 4
    assert count_parameters(model) == 10 * 20 + 20 + 20 * 4 * 3 + 4


def test_shared_parameters_are_counted_once():
    embed = nn.Embedding(100, 8)
    head = nn.Linear(8, 100, bias=False)
    head.weight = embed.weight  # tied weights
    assert count_parameters(nn.ModuleList([embed, head])) == 800
