"""CodeSep: anti-consistency bias, PIT cross-entropy, serial aux prediction, codes files, CLI."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from codecsep import cli
from codecsep.checkpoint import save_checkpoint
from codecsep.codecs import CodesFile
from codecsep.codecs.mica import MicaCodec, MicaConfig
from codecsep.errors import CodecSepError
from codecsep.separators.codecformer import Codecformer, CodecformerConfig
from codecsep.separators.codesep import (
    AntiConsistencyBias,
    CodeSep,
    CodeSepConfig,
    baseline_bitrate,
    compress_then_separate,
    matched_codebooks,
    mel_filterbank,
    pit_cross_entropy,
    separate_then_compress,
)

torch.set_num_threads(1)
TINY_CODEC = MicaConfig(channels=16, depth=1, n_codebooks=4, codebook_size=32, codebook_dim=4)
TINY = CodeSepConfig(n_codebooks=3, n_mels=16, dim=32, intra_layers=1, inter_layers=1, heads=2,
                     ffn_dim=64, aux_dim=32, aux_lstm_layers=1, aux_conformer_blocks=1,
                     aux_kernel=5)


def tiny(codec=None, **kw) -> CodeSep:
    torch.manual_seed(0)
    cfg = CodeSepConfig(**{**asdict(TINY), **kw})
    return CodeSep(cfg, codec=codec or MicaCodec(TINY_CODEC).eval()).eval()


def test_anti_consistency_bias_shape_and_sign():
    acbg = AntiConsistencyBias(16, init_std=1.0, noise_std=0.1)
    d = acbg.eval()(3)
    assert d.shape == (3, 2, 16)
    assert torch.equal(d[:, 1], -d[:, 0]) and d[:, 0].abs().min() > 0  # opposite, never zero
    assert torch.equal(acbg(3), d)  # deterministic in eval
    noisy = acbg.train()(3)
    assert torch.equal(noisy[:, 1], -noisy[:, 0]) and not torch.equal(noisy, d)
    assert not torch.equal(noisy[0], noisy[1])  # a fresh perturbation per item


def test_pit_cross_entropy_picks_the_right_permutation():
    torch.manual_seed(0)
    targets = torch.randint(0, 8, (2, 2, 5))
    logits = 6.0 * F.one_hot(targets, 8).float() + 0.1 * torch.randn(2, 2, 5, 8)
    logits[1] = logits[1].flip(0)  # item 1 predicts the speakers in the other order
    loss, perm = pit_cross_entropy(logits, targets)
    assert perm.tolist() == [[0, 1], [1, 0]]
    expected = torch.stack([
        F.cross_entropy(logits[0].reshape(-1, 8), targets[0].reshape(-1)),
        F.cross_entropy(logits[1].reshape(-1, 8), targets[1].flip(0).reshape(-1)),
    ])
    assert torch.allclose(loss, expected, atol=1e-6) and (loss < 0.1).all()


@pytest.mark.parametrize("features", ["mdct", "mel"])
def test_features_are_aligned_to_codec_frames(features):
    model = tiny(features=features)
    for t in (1, 320, 4001, 16000):
        assert model.features(torch.randn(2, t)).shape == (2, 32, model.codec.n_frames(t))
    fb = mel_filterbank(16000, 512, 40)
    assert fb.shape == (40, 257) and (fb >= 0).all() and (fb.amax(1) > 0).all()


def test_mdct_features_ignore_the_mixture_level_and_bad_kinds_are_refused():
    model = tiny(features="mdct")
    wav = torch.randn(1, 4000)
    loud, quiet = model.features(wav), model.features(0.1 * wav)  # 20 dB apart
    assert (loud - quiet).abs().max() < 0.02 * loud.abs().max()  # only compress()'s eps differs
    assert torch.isfinite(model.features(torch.zeros(1, 4000))).all()  # silence: no NaN
    with pytest.raises(CodecSepError, match="features"):
        tiny(features="chroma")


def test_aux_prediction_teacher_forcing_and_autoregressive_agree():
    model = tiny()
    atsp = model.net["atsp"]
    codes = torch.randint(0, 32, (3, 3, 11))
    tf = atsp.teacher_forcing(codes)
    assert tf.shape == (3, 2, 11, 32)
    gen = atsp.generate(codes[:, 0])
    assert gen.shape == (3, 3, 11) and gen.dtype == torch.int64
    assert torch.equal(gen[:, 0], codes[:, 0]) and 0 <= gen.min() and gen.max() < 32
    # fed its own outputs, teacher forcing reproduces the autoregressive choices
    assert torch.equal(atsp.teacher_forcing(gen).argmax(-1), gen[:, 1:])


def test_training_pass_losses_and_gradients():
    model = tiny().train()
    out = model(torch.randn(2, 1, 3201), torch.randn(2, 2, 3201))
    assert {"loss", "base_ce", "aux_ce", "base_acc", "aux_acc"} <= set(out)
    out["loss"].backward()
    assert all(p.grad is None for p in model.codec.parameters())  # the codec stays frozen
    assert model.net["btd"].bias.delta.grad is not None
    assert not model.codec.training


def test_encode_decode_shapes_and_bitrate():
    model = tiny(window_seconds=0.5, overlap_seconds=0.1)
    base = model.encode(torch.randn(2, 16000 + 5))  # stereo is mixed down
    assert base.shape == (2, 1, model.codec.n_frames(16005)) and base.dtype == torch.int64
    assert model.decode(base, 16005).shape == (2, 1, 16005)
    assert model.bitrate() == 2 * 5 * 50  # 2 speakers x log2(32) bits x 50 Hz


def test_full_size_bitrate_is_one_kbps_and_baselines_are_matched():
    codec = MicaCodec(MicaConfig()).eval()
    assert CodeSep(CodeSepConfig(), codec=codec).bitrate() == 1000.0
    assert matched_codebooks(codec, "fcts", 1000) == 2
    assert matched_codebooks(codec, "fstc", 1000) == 1
    assert baseline_bitrate(codec, "fstc", 4) == 4000
    with pytest.raises(CodecSepError, match="whole number"):
        matched_codebooks(codec, "fstc", 750)


def test_baselines_shapes():
    codec = MicaCodec(TINY_CODEC).eval()
    cf = Codecformer(CodecformerConfig(dim=16, depth=1, heads=2, ffn_dim=32), codec=codec).eval()
    wav = torch.randn(1, 4001)
    assert compress_then_separate(wav, cf, codec, 2).shape == (2, 1, 4001)
    assert separate_then_compress(wav, cf, codec, 1).shape == (2, 1, 4001)


@pytest.fixture
def saved(tmp_path):
    """A tiny Mica codec and CodeSep model on disk, and a 1.3 s mixture."""
    torch.manual_seed(0)
    codec = MicaCodec(TINY_CODEC).eval()
    save_checkpoint(tmp_path / "codec", "mica", asdict(TINY_CODEC), codec.state_dict())
    model = CodeSep(CodeSepConfig(**{**asdict(TINY), "codec": str(tmp_path / "codec")}))
    model.save(tmp_path / "model")
    sf.write(tmp_path / "mix.wav", 0.01 * torch.randn(20800).numpy(), 16000)
    return tmp_path


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.filterwarnings("ignore::codecsep.audio.ClippingWarning")  # untrained: any level
def test_cli_encode_decode_round_trip(saved, capsys):
    model = f"codesep:{saved / 'model'}"
    code, out, _ = run(["speech", "encode", saved / "mix.wav", "-o", saved / "mix.codes",
                        "--model", model], capsys)
    assert code == 0 and "0.5 kbps" in out  # 2 x 5 bits x 50 Hz with the tiny codebooks
    cf = CodesFile.load(saved / "mix.codes")
    assert cf.codes.shape == (2, 1, 66) and cf.length == 20800 and cf.n_quantizers == 1
    code, out, _ = run(["speech", "decode", saved / "mix.codes", "-o", saved / "out",
                        "--model", model], capsys)
    assert code == 0
    files = sorted((saved / "out").iterdir())
    assert [f.name for f in files] == ["mix_speaker1.wav", "mix_speaker2.wav"]
    assert all(sf.info(f).frames == 20800 and sf.info(f).samplerate == 16000 for f in files)
    code, _, err = run(["speech", "decode", saved / "mix.codes", "-o", saved / "out",
                        "--model", model], capsys)
    assert code == 2 and "--overwrite" in err  # existing outputs are kept


def test_cli_rejects_truncated_and_foreign_codes(saved, capsys):
    model = f"codesep:{saved / 'model'}"
    run(["speech", "encode", saved / "mix.wav", "-o", saved / "mix.codes", "--model", model],
        capsys)
    data = (saved / "mix.codes").read_bytes()
    (saved / "cut.codes").write_bytes(data[:-7])
    code, _, err = run(["speech", "decode", saved / "cut.codes", "-o", saved / "o1",
                          "--model", model], capsys)
    assert code == 2 and "truncated" in err and err.count("\n") == 1
    assert not (saved / "o1").exists()
    codec = CodeSep.load(saved / "model").codec
    plain = CodesFile(torch.zeros(1, 4, 66, dtype=torch.int64), codec.codec_id,
                      codec.weights_hash(), 16000, 20800, 4)
    plain.save(saved / "plain.codes")
    code, _, err = run(["speech", "decode", saved / "plain.codes", "-o", saved / "o2",
                        "--model", model], capsys)
    assert code == 2 and "not a CodeSep speech codes file" in err


def test_cli_separate_writes_one_file_per_speaker(saved, capsys):
    codec = MicaCodec(TINY_CODEC)
    cfg = CodecformerConfig(codec=str(saved / "codec"), dim=16, depth=1, heads=2, ffn_dim=32)
    Codecformer(cfg, codec=codec).save(saved / "cf")
    code, out, _ = run(["speech", "separate", "--model", f"codecformer:{saved / 'cf'}",
                        saved / "mix.wav", "-o", saved / "sep"], capsys)
    assert code == 0 and len(out.splitlines()) == 2
    assert sorted(p.name for p in (saved / "sep").iterdir()) == ["mix_speaker1.wav",
                                                                 "mix_speaker2.wav"]
    code, _, err = run(["speech", "separate", "--model", str(saved / "nothing"),
                        saved / "mix.wav", "-o", saved / "sep2"], capsys)
    assert code == 2 and "not a model checkpoint" in err
    sf.write(saved / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    code, _, err = run(["speech", "separate", "--model", f"codecformer:{saved / 'cf'}",
                        saved / "silent.wav", "-o", saved / "sep3"], capsys)
    assert code == 0 and "warning" in err and "silent" in err  # as `codecsep separate` warns
    (saved / "other").mkdir()
    sf.write(saved / "other" / "mix.wav", np.zeros(16000, dtype=np.float32), 16000)
    for inputs, message in (([saved / "mix.wav", saved / "other" / "mix.wav"], "same files"),
                            ([saved / "silent.wav", saved / "missing.wav"], "no such file")):
        code, _, err = run(["speech", "separate", "--model", f"codecformer:{saved / 'cf'}",
                            *inputs, "-o", saved / "sep4"], capsys)
        assert code == 2 and message in err and not (saved / "sep4").exists()  # nothing written


def test_save_load_round_trip_checks_codec_weights(saved):
    model = CodeSep.load(saved / "model")
    assert model.config.n_codebooks == 3 and "codec_weights" in model.meta
    other = MicaCodec(TINY_CODEC)  # other random weights: other tokens
    with pytest.raises(CodecSepError, match="codec weights"):
        CodeSep.load(saved / "model", codec=other)


def test_tiny_training_run(tmp_path):
    from helpers import write_speech_manifest

    from codecsep.train.loop import LoopConfig
    from codecsep.train.speech import SpeechRecipe, train_codesep

    manifest = write_speech_manifest(tmp_path)
    codec = MicaCodec(TINY_CODEC).eval()
    out = train_codesep(manifest, tmp_path / "run", TINY,
                        LoopConfig(steps=3, warmup=1, log_every=1, ckpt_every=3),
                        SpeechRecipe(batch_size=2, seconds=0.5), codec=codec)
    model = CodeSep.load(out, codec=codec)
    assert model.meta["step"] == 3
    assert "base_ce" in (tmp_path / "run" / "log.csv").read_text()
