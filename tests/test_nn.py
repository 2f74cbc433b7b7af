import torch

from codecsep.losses import neg_si_sdr, pit_neg_si_sdr
from codecsep.nn.convnext import ConvNeXtBlock
from codecsep.nn.film import FiLM
from codecsep.nn.transformer import FiLMTransformer, local_attention
from codecsep.separators.chunking import overlap_add


def test_film_is_identity_at_init():
    film = FiLM(8, 16)
    x = torch.randn(2, 5, 16)
    assert torch.equal(film(x, torch.randn(2, 8)), x)


def test_film_transformer_ignores_condition_at_init_but_not_after_a_step():
    torch.manual_seed(0)
    net = FiLMTransformer(16, 2, 4, 32, 8, dropout=0.0, norm_first=True).eval()
    x = torch.randn(2, 7, 16)
    c1, c2 = torch.randn(2, 8), torch.randn(2, 8)
    assert torch.allclose(net(x, c1), net(x, c2))
    for p in net.parameters():
        p.data += 0.01 * torch.randn_like(p)
    assert not torch.allclose(net(x, c1), net(x, c2))


def test_convnext_block_starts_near_identity():
    block = ConvNeXtBlock(16)
    x = torch.randn(2, 16, 9)
    assert (block(x) - x).abs().max() < 0.05


def test_pit_finds_exact_reordering():
    torch.manual_seed(0)
    refs = torch.randn(3, 3, 800)
    perm = torch.tensor([[2, 0, 1], [0, 1, 2], [1, 2, 0]])
    ests = torch.stack([refs[b, perm[b]] for b in range(3)])
    loss, best = pit_neg_si_sdr(ests, refs)
    for b in range(3):
        assert torch.equal(ests[b, torch.argsort(best[b])], refs[b]) or torch.equal(refs[b, best[b]], ests[b])
    assert (loss < -50).all()


def test_neg_si_sdr_scale_invariant():
    ref, est = torch.randn(4, 1000), torch.randn(4, 1000)
    assert torch.allclose(neg_si_sdr(est * 3.7, ref), neg_si_sdr(est, ref), atol=1e-4)


def test_overlap_add_identity_and_leading_axes():
    x = torch.randn(2, 1037)
    for window, overlap in [(100, 10), (300, 0), (2000, 100), (128, 64)]:
        y = overlap_add(x, window, overlap, lambda w: torch.stack([w, 2 * w]))
        assert y.shape == (2, 2, 1037)
        assert torch.allclose(y[0], x, atol=1e-5) and torch.allclose(y[1], 2 * x, atol=1e-5)


def test_local_attention_is_attention_masked_to_a_window_at_a_cost_per_frame():
    """Exactly full attention with |i - j| <= context allowed, on short and long sequences
    alike (blocks padded at the end); its MACs per frame stay flat as the sequence grows."""
    import torch.nn.functional as F

    from codecsep.flops import count_macs

    torch.manual_seed(0)
    for t, context in ((7, 3), (10, 3), (11, 3), (50, 4), (53, 8)):
        q, k, v = (torch.randn(2, 3, t, 8) for _ in range(3))
        i = torch.arange(t)
        window = (i[:, None] - i[None]).abs() <= context
        expect = F.scaled_dot_product_attention(q, k, v, attn_mask=window)
        assert torch.allclose(local_attention(q, k, v, context), expect, atol=1e-5)
    per_frame = [count_macs(local_attention, *(torch.randn(1, 2, t, 8) for _ in range(3)), 4) / t
                 for t in (64, 256, 1024)]
    full = [count_macs(F.scaled_dot_product_attention, *(torch.randn(1, 2, t, 8) for _ in range(3))) / t
            for t in (64, 256, 1024)]
    assert max(per_frame) / min(per_frame) < 1.1 and full[2] / full[0] == 16
