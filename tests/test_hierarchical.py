"""The hierarchical (two-stage) separator: stage 1, the masker's [text ; embedding] condition,
teacher forcing, Separator's inference paths, save/load, the training step and recipe, and the
single- vs two-stage comparison."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from codecsep.checkpoint import save_checkpoint
from codecsep.codecs.mica import MicaCodec, MicaConfig
from codecsep.data.manifest import Clip, write_manifest
from codecsep.errors import CodecSepError
from codecsep.evaluate import MixtureModel
from codecsep.separators.hierarchical import HierarchicalConfig, HierarchicalSeparator
from codecsep.separators.masker import MaskerConfig
from codecsep.separators.separator import Separator, SeparatorConfig
from codecsep.text.audio_encoder import AudioEncoder, AudioEncoderConfig
from codecsep.text.base import get_text_encoder
from codecsep.train.hierarchical import (
    HierarchicalRecipe,
    compare_separators,
    make_hierarchical_step_fn,
    train_hierarchical,
)
from codecsep.train.loop import LoopConfig

torch.set_num_threads(1)
SR, E = 16000, 32
CODEC = MicaConfig(channels=16, depth=1, n_codebooks=4, codebook_size=32, codebook_dim=4)
AUDIO = AudioEncoderConfig(n_bands=16, channels=24, depth=2, embed_dim=E, text_encoder="hash")
MASKER = MaskerConfig(dim=32, depth=1, heads=2, ffn_dim=64, cond_dim=2 * E, cond_hidden=16)
CFG = HierarchicalConfig(text_encoder="hash", masker=MASKER, audio=AUDIO, stage1_hidden=32,
                         window_seconds=1.0, overlap_seconds=0.25)


def text_encoder():
    return get_text_encoder("hash", dim=E)


def tiny(seed=0, config=CFG) -> HierarchicalSeparator:
    torch.manual_seed(seed)
    return HierarchicalSeparator(config, codec=MicaCodec(CODEC), text_encoder=text_encoder()).eval()


def recorded_conditions(sep):
    """Every cond (B, 2E) the inner CodecSep masker receives."""
    seen = []
    sep.masker.masker.register_forward_pre_hook(lambda mod, args: seen.append(args[1].detach()))
    return seen


# ------------------------------------------------------------------------------ stage 1
def test_stage1_starts_at_the_text_and_predicts_unit_vectors():
    sep = tiny()
    z = sep.codec.encode(torch.randn(3, 1, 4000) * 0.1)
    text = sep.embed(["dog", "rain", "a violin"])
    predicted = sep.masker.predict(z, text)
    torch.testing.assert_close(predicted, text)  # zero-initialised last layer
    torch.nn.init.normal_(sep.masker.stage1.out.weight)
    predicted = sep.masker.predict(z, text)
    assert predicted.shape == (3, E)
    torch.testing.assert_close(predicted.norm(dim=-1), torch.ones(3))
    assert not torch.allclose(predicted, text)
    mix = sep.masker.mixture_embedding(z)  # the frozen encoder on the mixture latent
    torch.testing.assert_close(mix, sep.masker.audio.embed_latent(z))


def test_masker_is_conditioned_on_text_then_target_embedding():
    sep = tiny()
    torch.nn.init.normal_(sep.masker.stage1.out.weight)
    seen = recorded_conditions(sep)
    z = sep.codec.encode(torch.randn(2, 1, 3000) * 0.1)
    text = sep.embed(["dog", "rain"])
    sep.masker(z, text)
    assert seen[-1].shape == (2, 2 * E)
    torch.testing.assert_close(seen[-1][:, :E], text)
    torch.testing.assert_close(seen[-1][:, E:], sep.masker.predict(z, text))
    given = torch.nn.functional.normalize(torch.randn(2, E), dim=-1)
    sep.masker(z, text, target_embedding=given)
    torch.testing.assert_close(seen[-1][:, E:], given)


def test_training_forward_switches_between_true_and_predicted_embedding():
    sep = tiny()
    torch.nn.init.normal_(sep.masker.stage1.out.weight)
    seen = recorded_conditions(sep)
    mix = torch.randn(2, 1, 3210) * 0.1
    text = sep.embed(["dog", "rain"])
    true = torch.nn.functional.normalize(torch.randn(2, E), dim=-1)
    target, residual, predicted = sep(mix, text, target_embedding=true, p_true=1.0,
                                      return_embedding=True)
    assert target.shape == residual.shape == mix.shape
    torch.testing.assert_close(target + residual, mix, atol=1e-5, rtol=0)
    torch.testing.assert_close(seen[-1][:, E:], true)
    sep(mix, text, target_embedding=true, p_true=0.0)
    torch.testing.assert_close(seen[-1][:, E:], predicted)
    assert len(sep(mix, text)) == 2  # Separator's contract by default


# ------------------------------------------------------------------------------ inference
def test_separate_and_separate_codes_run_through_separator_unchanged():
    sep = tiny()
    wav = torch.randn(2, int(1.7 * SR)) * 0.1  # stereo, longer than a 1 s window
    out = sep.separate(wav, ["dog", "rain"])
    assert out["target"].shape == out["residual"].shape == (2, 2, wav.shape[-1])
    torch.testing.assert_close(out["target"] + out["residual"], wav.expand(2, 2, -1),
                               atol=1e-4, rtol=0)
    query = torch.nn.functional.normalize(torch.randn(1, E), dim=-1)  # e.g. an audio query
    assert sep.separate(wav[0], None, cond=query)["target"].shape == (1, 1, wav.shape[-1])
    codes = sep.codec.quantize(sep.codec.encode(wav[:1, None]), 3)
    coded = sep.separate_codes(codes, ["dog", "rain"])
    assert coded["target"].shape == coded["residual"].shape == (2, 3, codes.shape[-1])
    assert coded["target"].dtype == torch.int64


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    codec = MicaCodec(CODEC)
    save_checkpoint(tmp_path / "codec", "mica", CODEC, codec.state_dict())
    cfg = HierarchicalConfig(**{**CFG.__dict__, "codec": str(tmp_path / "codec")})
    sep = HierarchicalSeparator(cfg, codec=codec, text_encoder=text_encoder()).eval()
    torch.nn.init.normal_(sep.masker.stage1.out.weight, std=0.1)
    path = sep.save(tmp_path / "hier", meta={"step": 3})
    again = HierarchicalSeparator.load(path, text_encoder=text_encoder())
    assert again.config == cfg and again.meta["step"] == 3 and "trained_by" in again.meta
    wav = torch.randn(SR) * 0.1
    a, b = sep.separate(wav, ["dog"])["target"], again.separate(wav, ["dog"])["target"]
    torch.testing.assert_close(a, b, atol=2e-3, rtol=0)  # weights are stored in float16
    state, state2 = sep.masker.state_dict(), again.masker.state_dict()
    assert state.keys() == state2.keys() and any(k.startswith("audio.") for k in state)
    with pytest.raises(CodecSepError, match="'hierarchical' checkpoint"):
        Separator.load(path, text_encoder=text_encoder())
    plain = Separator(SeparatorConfig(text_encoder="hash", masker=MaskerConfig(
        dim=32, depth=1, heads=2, ffn_dim=64, cond_dim=E, cond_hidden=16)), codec=codec,
        text_encoder=text_encoder()).save(tmp_path / "plain")
    with pytest.raises(CodecSepError, match="not a hierarchical separator"):
        HierarchicalSeparator.load(plain, codec=codec)
    with pytest.raises(CodecSepError, match="unknown HierarchicalConfig keys"):
        HierarchicalConfig.from_dict({"stage_one": 1})


def test_parts_that_do_not_fit_fail_with_one_line():
    bad_dim = HierarchicalConfig(**{**CFG.__dict__, "masker": MaskerConfig(cond_dim=E)})
    with pytest.raises(CodecSepError, match="cond_dim must be 2 x 32"):
        tiny(config=bad_dim)
    other_space = HierarchicalConfig(**{**CFG.__dict__, "text_encoder": "minilm"})
    with pytest.raises(CodecSepError, match="aligned with 'hash'"):
        HierarchicalSeparator(other_space, codec=MicaCodec(CODEC), text_encoder=text_encoder())
    with pytest.raises(CodecSepError, match="differs from config.audio"):
        HierarchicalSeparator(CFG, codec=MicaCodec(CODEC), text_encoder=text_encoder(),
                              audio_encoder=AudioEncoder(AudioEncoderConfig(text_encoder="hash")))


# ------------------------------------------------------------------------------ training
def test_step_trains_both_stages_but_not_the_audio_encoder():
    sep = tiny().train()
    recipe = HierarchicalRecipe(bf16=False, p_true_embedding=0.5)
    step = make_hierarchical_step_fn(recipe, sep.codec, sep.masker.audio)
    mix, target = torch.randn(3, 1, 8000) * 0.1, torch.randn(3, 1, 8000) * 0.05
    out = step(sep, (mix + target, target, sep.embed(["a", "b", "c"])))
    assert {"loss", "target_sisdr", "global_loss", "global_cos"} <= set(out)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert sep.masker.stage1.out.weight.grad.abs().sum() > 0
    assert sep.masker.masker.head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in sep.masker.audio.parameters())


def tiny_corpus(root) -> str:
    rng = np.random.default_rng(0)
    clips = []
    for split in ("train", "test"):
        for k, (label, freq) in enumerate((("hum", 150), ("whistle", 2500), ("noise", 0))):
            for i in range(2):
                t = np.arange(2 * SR) / SR
                x = rng.standard_normal(t.size) * 0.1 if not freq else 0.2 * np.sin(
                    2 * np.pi * freq * (1 + 0.02 * i) * t)
                path = root / split / f"{label}{i}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, x.astype(np.float32), SR)
                clips.append(Clip(path=str(path), label=label, captions=(label,), source="toy",
                                  source_id=f"{split}{k}{i}", split=split, duration=2.0))
    return str(write_manifest(clips, root / "manifest.jsonl"))


def test_recipe_exports_a_loadable_model_and_comparison_scores_the_same_items(tmp_path):
    manifest = tiny_corpus(tmp_path / "corpus")
    torch.manual_seed(0)
    out = train_hierarchical(manifest, str(tmp_path / "run"), config=CFG,
                             recipe=HierarchicalRecipe(batch_size=2, seconds=0.5, bf16=False,
                                                       p_augment=0.0),
                             loop=LoopConfig(steps=2, warmup=1, log_every=1, ckpt_every=2),
                             text_encoder=text_encoder(), codec=MicaCodec(CODEC),
                             audio_encoder=AudioEncoder(AUDIO))
    sep = HierarchicalSeparator.load(out, text_encoder=text_encoder(), codec=MicaCodec(CODEC))
    assert sep.meta["step"] == 2 and "global_cos" in (tmp_path / "run" / "log.csv").read_text()
    report = compare_separators({"mixture": MixtureModel(), "two-stage": sep}, n=2,
                                eval_dir=tmp_path / "eval", manifest=manifest)
    assert report["mixture"]["n"] == report["two-stage"]["n"] == len(report["items"]) == 2
    assert report["mixture"]["si_sdri"] == pytest.approx(0.0, abs=1e-3)
    assert np.isfinite(report["two-stage"]["si_sdri"])


def test_warm_start_from_a_single_stage_masker_computes_the_same_mask(tmp_path):
    from codecsep.train.hierarchical import load_into_hierarchical

    torch.manual_seed(1)
    single = Separator(SeparatorConfig(text_encoder="hash", masker=MaskerConfig(
        dim=32, depth=1, heads=2, ffn_dim=64, cond_dim=E, cond_hidden=16)),
        codec=MicaCodec(CODEC), text_encoder=text_encoder()).eval()
    for p in single.masker.parameters():  # move away from the identity init
        p.data.add_(0.05 * torch.randn_like(p))
    single.save(tmp_path / "single", meta={"step": 7})
    two = tiny()
    from codecsep.checkpoint import load_checkpoint

    kind, _, state, _ = load_checkpoint(tmp_path / "single")
    load_into_hierarchical(two, kind, state)
    # train stage 1 a little: its prediction g must not change the mask (zero weights on g)
    two.masker.stage1.out.weight.data.normal_()
    single = Separator.load(tmp_path / "single", text_encoder=text_encoder(),
                            codec=MicaCodec(CODEC)).eval()  # as saved (half precision)
    z, cond = torch.randn(2, 320, 20), single.embed(["a", "b"])
    with torch.no_grad():
        assert torch.allclose(two.masker(z, cond), single.masker(z, cond), atol=1e-5)
    with pytest.raises(CodecSepError, match="cannot start"):
        load_into_hierarchical(two, "resunet", state)
