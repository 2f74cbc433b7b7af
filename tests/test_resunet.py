"""The AudioSep-style ResUNet peer: shapes, FiLM identity, training signal, published cost."""

import numpy as np
import pytest
import soundfile as sf
import torch

from codecsep.data.manifest import Clip, write_manifest
from codecsep.errors import CodecSepError
from codecsep.evaluate import load_model
from codecsep.flops import count_macs, count_parameters
from codecsep.losses import neg_si_sdr
from codecsep.separators.resunet import (
    RESUNET30_PUBLISHED,
    FiLM2d,
    ResUNet,
    ResUNetConfig,
    ResUNetSeparator,
)
from codecsep.text.base import get_text_encoder
from codecsep.train.loop import LoopConfig
from codecsep.train.separator import SeparatorRecipe

TINY = ResUNetConfig(n_fft=256, hop_length=64, widths=(4, 8, 8), strides=((2, 2), (2, 2), (1, 2)),
                     cond_dim=16, window_seconds=0.5, overlap_seconds=0.1)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def test_forward_keeps_length_for_odd_lengths_and_returns_the_complement():
    sep = ResUNetSeparator(TINY).eval()
    for length in (1000, 4097, 8000):
        mix = torch.randn(3, 1, length)
        target, residual = sep(mix, torch.randn(3, 16))
        assert target.shape == residual.shape == (3, 1, length)
        torch.testing.assert_close(target + residual, mix)


def test_film_is_the_identity_at_init_so_the_prompt_does_not_matter_yet():
    film = FiLM2d(16, 4)
    x = torch.randn(2, 4, 5, 6)
    torch.testing.assert_close(film(x, torch.randn(2, 16)), x)
    net = ResUNet(TINY).eval()
    mix = torch.randn(1, 1, 4000)
    a, b = net(mix, torch.randn(1, 16)), net(mix, torch.randn(1, 16))
    torch.testing.assert_close(a, b)
    film.proj.bias.data.fill_(1.0)
    assert not torch.allclose(film(x, torch.randn(2, 16)), x)


def test_separate_windows_prompts_and_channels():
    sep = ResUNetSeparator(TINY, text_encoder=get_text_encoder("hash", dim=16)).eval()
    wav = torch.randn(2, 20000) * 0.1  # 1.25 s: three 0.5-s windows with crossfades
    out = sep.separate(wav, ["dog", "rain", "speech"])
    assert out["target"].shape == out["residual"].shape == (3, 2, 20000)
    torch.testing.assert_close(out["target"] + out["residual"], wav.expand(3, 2, -1), atol=1e-5,
                               rtol=0)
    with pytest.raises(CodecSepError):
        sep.separate(torch.zeros(2, 2, 10), ["dog"])
    with pytest.raises(CodecSepError):
        sep.separate(wav, [" "])


def test_save_load_round_trip_is_exact_and_loadable_by_eval(tmp_path):
    enc = get_text_encoder("hash", dim=16)
    sep = ResUNetSeparator(TINY, text_encoder=enc)
    sep.train()
    sep(torch.randn(4, 1, 3000), torch.randn(4, 16))  # move the BatchNorm running statistics
    sep.eval().save(tmp_path / "ck", meta={"step": 3})
    back = ResUNetSeparator.load(tmp_path / "ck", text_encoder=enc)
    assert back.config == TINY and back.meta["step"] == 3
    wav = torch.randn(1, 6000) * 0.1
    torch.testing.assert_close(back.separate(wav, ["dog"])["target"],
                               sep.separate(wav, ["dog"])["target"])
    via_eval = load_model(f"resunet:{tmp_path / 'ck'}", text_encoder=enc)
    assert isinstance(via_eval, ResUNetSeparator) and via_eval.sample_rate == 16000
    with pytest.raises(CodecSepError, match="not divisible"):
        ResUNetConfig(n_fft=200, widths=(4,), strides=((2, 8),))


def test_a_few_training_steps_reduce_the_loss_on_a_tiny_problem():
    """Target: a 440 Hz tone; interferer: noise. Same loss as CodecSep (-SI-SDR)."""
    sep = ResUNetSeparator(TINY)
    opt = torch.optim.AdamW(sep.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(4000) / 16000
    cond = torch.ones(8, 16)

    def batch():
        tone = 0.3 * torch.sin(2 * torch.pi * 440 * t + torch.rand(8, 1, generator=gen) * 6)
        noise = 0.3 * torch.randn(8, 4000, generator=gen)
        return (tone + noise)[:, None], tone[:, None]

    losses = []
    for _ in range(30):
        mix, tone = batch()
        loss = neg_si_sdr(sep(mix, cond)[0][:, 0], tone[:, 0]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 3.0  # at least 3 dB better


def test_published_config_costs_what_audiosep_reports():
    """30.45 GMACs/s = the network on a 1-s input (101 frames padded to 128) + torchlibrosa's
    DFT-as-convolution STFT/iSTFT. Counted on 0.32 s (32 frames) and scaled by 128/32."""
    cfg = RESUNET30_PUBLISHED
    net = ResUNet(cfg).eval()
    wav = torch.randn(1, 1, 31 * cfg.hop_length)  # 32 frames with centring: one pooling unit
    network = count_macs(net, wav, torch.zeros(1, 512)) * 128 / 32
    frames = 1 + cfg.sample_rate // cfg.hop_length
    dft = frames * 2 * (cfg.n_fft // 2 + 1) * cfg.n_fft + frames * 2 * cfg.n_fft * cfg.n_fft
    assert network + dft == pytest.approx(30.45e9, rel=0.15)
    assert network + dft == pytest.approx(30.45e9, rel=0.01)  # in fact within 1 %
    # 39 M published = ours + the frozen DFT matrices (12.6 M) + unused decoder FiLMs (~0.8 M)
    assert count_parameters(net) == pytest.approx(25.6e6, rel=0.01)


def test_train_resunet_recipe_runs_and_exports(tmp_path):
    from codecsep.train.resunet import train_resunet

    rng = np.random.default_rng(0)
    clips = []
    for i, label in enumerate(("dog", "rain", "piano")):
        path = tmp_path / f"{label}.wav"
        sf.write(path, (rng.standard_normal(8000) * 0.1 * (i + 1)).astype(np.float32), 16000)
        clips.append(Clip(path=path.name, label=label, captions=(label,), source="t",
                          source_id=label, split="train", duration=0.5))
    manifest = write_manifest(clips, tmp_path / "manifest.jsonl")
    out = train_resunet(str(manifest), str(tmp_path / "run"), config=TINY,
                        recipe=SeparatorRecipe(batch_size=2, seconds=0.25),
                        loop=LoopConfig(steps=2, warmup=1, log_every=1, ckpt_every=2),
                        text_encoder=get_text_encoder("hash", dim=16))
    sep = ResUNetSeparator.load(out, text_encoder=get_text_encoder("hash", dim=16))
    assert sep.meta["step"] == 2 and (tmp_path / "run" / "log.csv").is_file()
    with pytest.raises(CodecSepError, match="codec"):
        train_resunet(str(manifest), str(tmp_path / "r2"), config=TINY,
                      recipe=SeparatorRecipe(codec_sisdr=True))
