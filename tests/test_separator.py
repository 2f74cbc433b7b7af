import numpy as np
import pytest
import torch

from codecsep.codecs.mica import MicaCodec, MicaConfig
from codecsep.errors import CodecSepError
from codecsep.separators.masker import PAPER_DAC16K, Masker, MaskerConfig
from codecsep.separators.separator import Separator, SeparatorConfig
from codecsep.text.base import get_text_encoder

TINY_CODEC = MicaConfig(channels=16, depth=1, n_codebooks=4, codebook_size=32, codebook_dim=4)
TINY_MASKER = MaskerConfig(dim=32, depth=1, heads=2, ffn_dim=64, cond_dim=384, cond_hidden=16)


def tiny_separator(**cfg) -> Separator:
    torch.manual_seed(0)
    sep = Separator(SeparatorConfig(masker=TINY_MASKER, **cfg), codec=MicaCodec(TINY_CODEC),
                    text_encoder=get_text_encoder("hash", dim=384))
    for p in sep.masker.parameters():  # leave the identity start so prompts matter
        p.data += 0.05 * torch.randn_like(p)
    return sep.eval()


def test_target_plus_residual_is_the_mixture():
    sep = tiny_separator()
    wav = torch.randn(2, 5000) * 0.1
    out = sep.separate(wav, ["dog barking", "violin"])
    assert out["target"].shape == (2, 2, 5000) == out["residual"].shape
    assert torch.allclose(out["target"] + out["residual"], wav.expand(2, 2, 5000), atol=1e-4)
    assert not torch.allclose(out["target"][0], out["target"][1])


def test_long_input_in_windows_matches_for_a_frame_local_model():
    sep = tiny_separator(window_seconds=0.5, overlap_seconds=0.1)
    sep.masker.config.__class__  # masker sees context, so windows differ only near the seams
    wav = torch.randn(1, 16000 * 2) * 0.1
    out = sep.separate(wav, ["dog"])
    assert out["target"].shape == (1, 1, 32000)
    assert torch.isfinite(out["target"]).all()


def test_separate_codes_returns_valid_codes():
    sep = tiny_separator()
    codec = sep.codec
    codes = codec.quantize(codec.encode(torch.randn(1, 1, 4000) * 0.1), 3)
    out = sep.separate_codes(codes, ["a", "b"])
    assert out["target"].shape == (2, 3, codes.shape[-1])
    assert int(out["target"].max()) < codec.codebook_size


def test_save_load_roundtrip(tmp_path):
    sep = tiny_separator()
    sep.save(tmp_path / "m")
    back = Separator.load(tmp_path / "m", codec=sep.codec, text_encoder=sep.text_encoder)
    wav = torch.randn(1, 3000) * 0.1
    a, b = sep.separate(wav, ["x"])["target"], back.separate(wav, ["x"])["target"]
    assert torch.allclose(a, b, atol=1e-3)  # weights are stored in float16
    assert "trained_by" in back.meta and back.meta["latent_space"] == "mdct-16000-320"


def test_load_refuses_corrupt_or_missing(tmp_path):
    with pytest.raises(CodecSepError, match="not a CodecSep checkpoint"):
        Separator.load(tmp_path)
    sep = tiny_separator()
    sep.save(tmp_path / "m")
    data = bytearray((tmp_path / "m" / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "m" / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CodecSepError, match="hash"):
        Separator.load(tmp_path / "m", codec=sep.codec)


@pytest.mark.parametrize("bad", ["", "   ", []])
def test_empty_prompt_is_refused(bad):
    with pytest.raises(CodecSepError):
        tiny_separator().separate(torch.randn(1000), bad)


def test_masker_configs_share_one_class():
    m = Masker(MaskerConfig(**{**PAPER_DAC16K.__dict__, "depth": 1}))
    assert m(torch.randn(1, 1024, 10), torch.randn(1, 512)).shape == (1, 1024, 10)
    bounded = Masker(TINY_MASKER)(torch.randn(1, 320, 10), torch.randn(1, 384))
    assert bounded.min() >= 0 and bounded.max() <= 1


def test_shifted_passes_keep_the_mixture_identity_and_change_the_estimate():
    sep = tiny_separator()
    wav = torch.randn(1, 4321) * 0.1
    one = sep.separate(wav, ["dog"])
    sep.shifts = 2
    two = sep.separate(wav, ["dog"])
    assert torch.allclose(two["target"] + two["residual"], wav.expand(1, 1, -1), atol=1e-4)
    assert not torch.allclose(one["target"], two["target"], atol=1e-5)
    assert sep.inference_tag() == "shifts:2" and sep.shift_offsets == [0, 160]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_shift_counts_are_refused(bad):
    sep = tiny_separator()
    sep.shifts = bad
    with pytest.raises(CodecSepError, match="shifts must be a whole number"):
        sep.separate(torch.randn(1, 1000), ["dog"])


def test_shifted_mean_of_a_shift_equivariant_function_is_exact():
    from codecsep.separators.chunking import shifted_mean

    x = torch.randn(2, 1000)
    assert torch.allclose(shifted_mean(x, [0, 80, 160, 240], lambda c: 2 * c), 2 * x)


# ------------------------------------------------------------------ band refiner (frequency axis)
def _grown(band_width: int = 8) -> Masker:
    from dataclasses import replace

    return Masker(replace(TINY_MASKER, band_width=band_width, band_dim=16, band_heads=2,
                          band_ffn_dim=32, band_context=4))


def test_band_refiner_grows_a_checkpoint_without_changing_it():
    from codecsep.train.separator import load_masker_state

    torch.manual_seed(0)
    base = Masker(TINY_MASKER).eval()
    grown = _grown().eval()
    load_masker_state(grown, base.state_dict())
    z, c = torch.randn(2, 320, 30), torch.randn(2, 384)
    with torch.no_grad():
        assert torch.equal(base(z, c), grown(z, c))  # zero-initialised correction
        grown.bands.out.weight.normal_()
        assert not torch.allclose(base(z, c), grown(z, c))
    with pytest.raises(CodecSepError, match="does not fit"):
        load_masker_state(base, grown.state_dict())  # unexpected refiner weights


def test_band_refiner_is_frame_local_and_sees_other_bands():
    """A frame's correction depends on every band of that frame and on no other frame."""
    torch.manual_seed(0)
    m = _grown().eval()
    with torch.no_grad():
        m.bands.out.weight.normal_()
        f, logits = torch.randn(1, 320, 5), torch.randn(1, 320, 5)
        state, cond = torch.randn(1, 5, 32), torch.randn(1, 16)
        y = m.bands(f, logits, state, cond)
        f2 = f.clone()
        f2[0, 300:, 2] += 3.0  # the top band of frame 2
        y2 = m.bands(f2, logits, state, cond)
    changed = (y2 - y).abs().amax(dim=1)[0]
    assert changed[2] > 0 and torch.all(changed[[0, 1, 3, 4]] == 0)
    assert (y2 - y)[0, :8, 2].abs().max() > 0  # the lowest band hears the top one


def test_band_width_must_divide_the_latent():
    from dataclasses import replace

    with pytest.raises(ValueError, match="divide"):
        replace(TINY_MASKER, band_width=7)


def test_band_refiner_cost_is_counted():
    from codecsep.flops import macs_per_second

    args = (torch.randn(1, 320, 50), torch.randn(1, 384))
    base, grown = Masker(TINY_MASKER), _grown()
    extra = macs_per_second(grown, args) - macs_per_second(base, args)
    bands = 320 // 8
    per_frame = bands * (2 * 16 * 3 * 16 + 2 * 2 * 16 * 32)  # attention projections + FFN, 2 layers
    assert extra > 50 * per_frame


# ------------------------------------------------------------------ band-split (dual-path) trunk
TINY_BANDSPLIT = MaskerConfig(trunk="bandsplit", split="8x4,32x3,64x3", dim=16, depth=2, heads=2,
                              ffn_dim=32, cond_dim=384, cond_hidden=16, dropout=0.0, mask_hidden=16)


def test_split_spec_parses_and_must_cover_the_latent():
    from dataclasses import replace

    from codecsep.separators.masker import split_widths

    assert split_widths("8x10,16x5,32x5") == [8] * 10 + [16] * 5 + [32] * 5
    with pytest.raises(ValueError, match="covers 300 bins"):
        replace(TINY_BANDSPLIT, split="20x15")
    with pytest.raises(ValueError, match="WIDTHxCOUNT"):
        replace(TINY_BANDSPLIT, split="sixteen")
    with pytest.raises(ValueError, match="no band refiner"):
        replace(TINY_BANDSPLIT, band_width=8)


def test_bandsplit_masker_maps_every_bin_and_mixes_time_and_bands():
    """Uneven bands are padded internally, yet every output bin is its own input bin's band's:
    the mask at (bin, frame) depends on all bins and all frames (time and band attention)."""
    from codecsep.separators.masker import build_masker

    torch.manual_seed(0)
    m = build_masker(TINY_BANDSPLIT).eval()
    assert m.index[m.valid].tolist() == list(range(320))
    z = torch.randn(1, 320, 12, requires_grad=True)
    y = m(z, torch.randn(1, 384))
    assert y.shape == (1, 320, 12) and 0 < y.min() and y.max() < 1
    y[0, 3, 0].backward()  # lowest band, first frame
    grad = z.grad[0].abs()
    assert (grad.sum(1) > 0).all()  # every bin (other bands, incl. the top one)
    assert (grad.sum(0) > 0).all()  # every frame


def test_bandsplit_separator_saves_loads_and_prompts_matter(tmp_path):
    sep = Separator(SeparatorConfig(masker=TINY_BANDSPLIT), codec=MicaCodec(TINY_CODEC),
                    text_encoder=get_text_encoder("hash", dim=384)).eval()
    for p in sep.masker.parameters():
        p.data += 0.05 * torch.randn_like(p)
    wav = torch.randn(1, 6000) * 0.1
    out = sep.separate(wav, ["dog barking", "violin"])
    assert torch.allclose(out["target"] + out["residual"], wav.expand(2, 1, 6000), atol=1e-4)
    assert not torch.allclose(out["target"][0], out["target"][1])
    sep.save(tmp_path / "bs")
    again = Separator.load(tmp_path / "bs", codec=sep.codec, text_encoder=sep.text_encoder)
    assert again.config.masker == TINY_BANDSPLIT
    assert torch.allclose(again.separate(wav, ["violin"])["target"], out["target"][1:], atol=1e-3)


def test_bandsplit_cost_is_counted():
    """Its MACs scale with bands x frames: the Transformer layers alone set a floor."""
    from codecsep.flops import macs_per_second
    from codecsep.separators.masker import build_masker

    c = TINY_BANDSPLIT
    macs = macs_per_second(build_masker(c), (torch.randn(1, 320, 50), torch.randn(1, 384)))
    tokens = 50 * 10  # frames x bands per second
    per_token = 2 * c.depth * (4 * c.dim * c.dim + 2 * c.dim * c.ffn_dim)  # time + band layers
    assert macs > tokens * per_token


def test_code_streams_run_through_the_same_windows_as_their_waveforms():
    """A code stream of a window-long recording is one window (the codec gives one frame more
    than window / hop, which once made it two), and longer ones are cut as their waveforms are."""
    sep = tiny_separator(window_seconds=1.0, overlap_seconds=0.2)
    frames_seen = []
    sep.masker.register_forward_hook(lambda m, args, out: frames_seen.append(args[0].shape[-1]))
    for seconds, windows in ((1.0, 1), (2.5, 3)):
        wav = torch.randn(1, int(seconds * 16000)) * 0.1
        frames_seen.clear()
        sep.separate(wav, ["a"])
        of_waveform = list(frames_seen)
        frames_seen.clear()
        sep.separate_codes(sep.codec.quantize(sep.codec.encode(wav[None]), 3), ["a"])
        assert len(of_waveform) == windows and frames_seen == of_waveform


def test_windows_other_than_the_old_default_are_part_of_the_fingerprint():
    """Long inputs give other outputs under other windows, so their results must not resume
    each other; the 10 s / 1 s windows of earlier checkpoints leave their fingerprints as they were."""
    assert tiny_separator().inference_tag() == ""
    assert tiny_separator(window_seconds=4.0).inference_tag() == "window:4:1"
    assert tiny_separator(window_seconds=4.0, overlap_seconds=0.5, shifts=2).inference_tag() == "window:4:0.5+shifts:2"


def test_local_time_attention_limits_what_a_frame_sees_and_code_streams_take_long_windows():
    """time_context c: after `depth` layers a frame's mask depends on frames within depth x c
    of it and on no others (besides the level all frames share); position_jitter moves the positions
    in training only; position_wavelength holds the slow ones; a code stream
    then runs in its own long windows (`code_window_seconds`), part of the fingerprint."""
    from dataclasses import replace

    from codecsep.separators.masker import build_masker

    torch.manual_seed(0)
    c = replace(TINY_BANDSPLIT, time_context=2, position_jitter=100)
    m = build_masker(c).eval()
    z, cond = torch.randn(1, 320, 20), torch.randn(1, 384)
    reach = c.depth * 2  # frames

    def swapped(a, b):  # z with two frames swapped: the level (a mean over all frames) stays
        out = z.clone()
        out[..., [a, b]] = z[..., [b, a]]
        return out

    with torch.no_grad():
        first = m(z, cond)[..., 0]
        assert torch.allclose(m(swapped(reach + 1, 19), cond)[..., 0], first, atol=1e-6)
        assert not torch.allclose(m(swapped(reach - 1, 19), cond)[..., 0], first, atol=1e-4)
        full = build_masker(TINY_BANDSPLIT).eval()  # full attention: far frames matter
        assert not torch.allclose(full(swapped(reach + 1, 19), cond)[..., 0], full(z, cond)[..., 0], atol=1e-4)
        assert torch.equal(m(z, cond), m(z, cond))  # no jitter outside training
        m.train()
        torch.manual_seed(1)
        assert not torch.equal(m(z, cond), m(z, cond))
    # position_wavelength: the slow sinusoids hold still, so a 10,000-frame window shows the masker
    # only values a short crop shows; the fast ones still tell nearby frames apart
    from codecsep.separators.masker import frame_positions

    m = build_masker(replace(c, position_wavelength=20)).eval()
    short, long = frame_positions(m, 100, 16, None), frame_positions(m, 10000, 16, None)
    moving = long.std(0) > 0
    assert 0 < moving.sum() < 16 and torch.equal(long[:100], short)
    assert long[:, moving].abs().max() <= 1 and (long[:, ~moving] == short[0, ~moving]).all()
    sep = Separator(SeparatorConfig(masker=c, window_seconds=1.0, overlap_seconds=0.2,
                                    code_window_seconds=3.0),
                    codec=MicaCodec(TINY_CODEC), text_encoder=get_text_encoder("hash", dim=384)).eval()
    frames_seen = []
    sep.masker.register_forward_hook(lambda m, args, out: frames_seen.append(args[0].shape[-1]))
    wav = torch.randn(1, 40000) * 0.1
    sep.separate(wav, ["a"])
    assert len(frames_seen) == 3  # the waveform: 1-s windows
    frames_seen.clear()
    sep.separate_codes(sep.codec.quantize(sep.codec.encode(wav[None]), 3), ["a"])
    assert frames_seen == [sep.codec.n_frames(40000)]  # the code stream: one 3-s window
    assert sep.inference_tag() == "window:1:0.2+codewindow:3"
