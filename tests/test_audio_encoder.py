"""The aligned audio encoder: shapes, invariances, contrastive learning, retrieval metrics,
save/load, semantic scores, the training recipe, and `separate --query-audio`."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from codecsep import cli
from codecsep.checkpoint import save_checkpoint
from codecsep.codecs.mica import MicaCodec, MicaConfig
from codecsep.data.manifest import Clip, write_manifest
from codecsep.errors import CodecSepError
from codecsep.separators.masker import MaskerConfig
from codecsep.separators.separator import Separator, SeparatorConfig
from codecsep.text.audio_encoder import (
    AudioEncoder,
    AudioEncoderConfig,
    mel_band_matrix,
    retrieval_metrics,
    semantic_score,
)
from codecsep.text.anchors import AUDIO_QUERY_WEIGHT
from codecsep.text.base import get_text_encoder
from codecsep.train.audio_encoder import (
    AudioEncoderRecipe,
    LevelBank,
    contrastive_batches,
    info_nce,
    train_audio_encoder,
)
from codecsep.train.loop import LoopConfig

torch.set_num_threads(1)
SR = 16000
TINY = AudioEncoderConfig(n_bands=16, channels=24, depth=2, embed_dim=32, text_encoder="hash")


def tiny_encoder(seed=0, config=TINY) -> AudioEncoder:
    torch.manual_seed(seed)
    return AudioEncoder(config, text_encoder=get_text_encoder("hash", dim=config.embed_dim)).eval()


def toy_sound(kind: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Four easily told-apart sounds: low tone, high tone, noise, click train."""
    t = np.arange(n) / SR
    if kind == 0:
        x = np.sin(2 * np.pi * rng.uniform(200, 300) * t)
    elif kind == 1:
        x = np.sin(2 * np.pi * rng.uniform(3000, 4000) * t)
    elif kind == 2:
        x = rng.standard_normal(n) * 0.3
    else:
        x = np.zeros(n)
        x[:: int(rng.uniform(800, 1600))] = 1.0
    return (x * rng.uniform(0.05, 0.5)).astype(np.float32)


# ------------------------------------------------------------------------------ the network
def test_shapes_unit_norm_and_odd_lengths():
    enc = tiny_encoder()
    for length in (1, 319, 4001):
        emb = enc.embed_wav(torch.randn(3, 1, length))
        assert emb.shape == (3, 32)
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    assert enc.embed(np.random.randn(2, 5000).astype(np.float32)).shape == (32,)
    levels = enc.band_levels(enc.mdct(torch.randn(4, 1, 3000)))
    assert levels.shape == (4, 16, enc.mdct.n_frames(3000))
    logits = enc(levels, text=torch.nn.functional.normalize(torch.randn(4, 32)))
    assert logits.shape == (4, 4)
    assert logits.abs().max() <= enc.logit_scale.exp() + 1e-4  # cosines times the temperature


def test_embedding_ignores_gain_and_follows_the_sample_rate():
    enc = tiny_encoder()
    x = toy_sound(2, SR, np.random.default_rng(0)) + toy_sound(0, SR, np.random.default_rng(1))
    torch.testing.assert_close(enc.embed(x), enc.embed(0.05 * x), atol=1e-4, rtol=0)
    from codecsep.audio import resample

    x44 = resample(torch.from_numpy(x)[None], SR, 44100)[0]
    cos = float(enc.embed(x44, sample_rate=44100) @ enc.embed(x))
    assert cos > 0.99
    with pytest.raises(CodecSepError, match="T > 0"):
        enc.embed(np.zeros(0, dtype=np.float32))
    with pytest.raises(CodecSepError, match="NaN"):
        enc.embed(np.full(100, np.nan, dtype=np.float32))


def test_mel_bands_cover_every_band_and_sum_to_one():
    fb = mel_band_matrix(320, 64, SR)
    assert fb.shape == (64, 320) and (fb >= 0).all()
    torch.testing.assert_close(fb.sum(1), torch.ones(64))
    centres = (fb * torch.arange(320)).sum(1)
    assert (centres.diff() >= 0).all()  # bands go up in frequency


def test_latent_path_equals_waveform_path():
    enc = tiny_encoder()
    wav = torch.randn(2, 1, 6000) * 0.1
    torch.testing.assert_close(enc.embed_latent(MicaCodec(MicaConfig(channels=16, depth=1,
                               n_codebooks=2, codebook_size=8, codebook_dim=4)).encode(wav)),
                               enc.embed_wav(wav))


# ------------------------------------------------------------------------------ learning
def test_info_nce_decreases_on_a_separable_toy_set():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    enc = AudioEncoder(TINY).train()
    text = torch.nn.functional.normalize(torch.randn(4, 32), dim=-1)  # one "caption" per class
    opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        wav = torch.from_numpy(np.stack([toy_sound(k, 8000, rng) for k in range(4)]))[:, None]
        loss = info_nce(enc(enc.band_levels(enc.mdct(wav)), text, spec_augment=True))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.3 * np.mean(losses[:5])
    enc.eval()
    test = torch.from_numpy(np.stack([toy_sound(k, 8000, rng) for k in range(4)]))[:, None]
    assert (enc.embed_wav(test) @ text.T).argmax(1).tolist() == [0, 1, 2, 3]  # each clip finds its caption


def test_info_nce_is_symmetric_and_minimal_on_a_sharp_diagonal():
    logits = torch.randn(5, 5)
    assert float(info_nce(logits)) == pytest.approx(float(info_nce(logits.T)))
    assert float(info_nce(100 * torch.eye(5))) < 1e-6
    assert float(info_nce(torch.zeros(5, 5))) == pytest.approx(np.log(5))


# ------------------------------------------------------------------------------ metrics
def test_retrieval_metrics_on_a_constructed_example():
    text = torch.eye(3)  # queries a, b, c on the axes
    audio = torch.tensor([[1.0, 0.0, 0.0],   # a: the best match of query a
                          [0.9, 0.1, 0.0],   # b, but close to a
                          [0.0, 0.2, 1.0],   # c
                          [0.0, 0.0, 0.9],   # c
                          [0.1, 0.0, 0.0]])  # a
    m = retrieval_metrics(audio, ["a", "b", "c", "c", "a"], text, ["a", "b", "c"])
    # query b's most similar clip is the 3rd (0.2/|.|= 0.196) vs b-clip (0.1/0.906 = 0.110): miss
    assert m["R@1"] == pytest.approx(2 / 3)
    assert m["R@10"] == 1.0
    # clips classified by their closest query: a ok, b -> a, c ok, c ok, a ok
    assert m["class_accuracy"] == pytest.approx(4 / 5)
    assert m["balanced_class_accuracy"] == pytest.approx((1 + 0 + 1) / 3)
    # query a ranks [a0 (1.0), a4 (1.0), b1 (0.994), ...]: AP = 1
    assert m["n_queries"] == 3 and m["n_gallery"] == 5
    perfect = retrieval_metrics(torch.eye(3), ["x", "y", "z"], torch.eye(3), ["x", "y", "z"])
    assert perfect["R@1"] == perfect["mAP"] == perfect["class_accuracy"] == 1.0


# ------------------------------------------------------------------------------ persistence
def test_save_load_round_trip_and_errors(tmp_path):
    enc = tiny_encoder(seed=3)
    path = enc.save(tmp_path / "enc", meta={"step": 7})
    again = AudioEncoder.load(path, text_encoder=get_text_encoder("hash", dim=32))
    x = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    torch.testing.assert_close(again.embed(x), enc.embed(x), atol=2e-3, rtol=0)  # fp16 weights
    assert again.meta["step"] == 7 and "trained_by" in again.meta
    assert (path / "model.safetensors").stat().st_size < 3e6
    with pytest.raises(CodecSepError, match="no audio encoder"):
        AudioEncoder.load(tmp_path / "missing")
    save_checkpoint(tmp_path / "other", "mica", {"x": 1}, {"w": torch.zeros(1)})
    with pytest.raises(CodecSepError, match="not an audio encoder"):
        AudioEncoder.load(tmp_path / "other")


def test_semantic_score_is_a_cosine_per_row():
    enc = tiny_encoder()
    rng = np.random.default_rng(0)
    x = toy_sound(1, SR, rng)
    s = semantic_score(x, "a high tone", encoder=enc)
    expected = float(enc.embed(x) @ enc.embed_text(["a high tone"])[0])
    assert isinstance(s, float) and s == pytest.approx(expected, abs=1e-5)
    rows = torch.from_numpy(np.stack([toy_sound(k, SR, rng) for k in range(2)]))[:, None]
    scores = semantic_score(rows, ["low", "high"], encoder=enc)
    assert scores.shape == (2,) and (scores.abs() <= 1 + 1e-5).all()
    with pytest.raises(CodecSepError, match="one prompt per audio row"):
        semantic_score(rows, ["only one"], encoder=enc)


# ------------------------------------------------------------------------------ recipe
def tiny_corpus(root, per_label=2) -> str:
    rng = np.random.default_rng(0)
    clips = []
    for split in ("train", "valid", "test"):
        for k, label in enumerate(("low tone", "high tone", "noise", "clicks")):
            for i in range(per_label):
                path = root / split / f"{k}_{i}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, toy_sound(k, SR, rng), SR)
                clips.append(Clip(path=str(path), label=label, captions=(label, f"some {label}"),
                                  source="toy", source_id=f"{split}{k}{i}", split=split,
                                  duration=1.0))
    return str(write_manifest(clips, root / "manifest.jsonl"))


def test_batches_hold_distinct_labels_and_training_exports_a_reported_checkpoint(tmp_path):
    manifest = tiny_corpus(tmp_path / "corpus")
    from codecsep.data.bank import ClipBank
    from codecsep.data.manifest import read_manifest
    from codecsep.train.separator import PromptTable

    text = get_text_encoder("hash", dim=32)
    bank = ClipBank(read_manifest(manifest, split="train"), SR)
    prompts = PromptTable({c.label: c.captions for c in bank.clips}, text)
    levels = LevelBank(bank, tiny_encoder())
    assert levels.crop(0, 200, np.random.default_rng(0)).shape == (16, 200)  # padded: 1 s = 51
    lv, emb = next(contrastive_batches(levels, prompts, AudioEncoderRecipe(batch_size=9,
                                                                           seconds=0.5), 50, 0))
    assert lv.shape == (4, 16, 25) and emb.shape == (4, 32)  # capped at 4 labels
    labels = [min(prompts.options, key=lambda lab: float((prompts.embeddings[[prompts.index[p]
              for p in prompts.options[lab]]] - e).norm(dim=1).min())) for e in emb]
    assert len(set(labels)) == 4

    out = train_audio_encoder(manifest, str(tmp_path / "run"), config=TINY,
                              recipe=AudioEncoderRecipe(seconds=0.5, eval_seconds=0.5),
                              loop=LoopConfig(steps=3, warmup=1, log_every=1, ckpt_every=3),
                              text_encoder=text)
    enc = AudioEncoder.load(out)
    assert enc.meta["step"] == 3 and "trained_by" in enc.meta
    for key in ("valid_retrieval", "test_retrieval"):
        assert set(enc.meta[key]) >= {"R@1", "R@10", "class_accuracy"}
    assert (tmp_path / "run" / "retrieval_test.json").is_file()


# ------------------------------------------------------------------------------ --query-audio
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny separator (hash text space, 64-d) and a matching and a mismatched audio encoder."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    codec_cfg = MicaConfig(channels=16, depth=1, n_codebooks=4, codebook_size=32, codebook_dim=4)
    save_checkpoint(root / "codec", "mica", codec_cfg, MicaCodec(codec_cfg).state_dict())
    masker = MaskerConfig(dim=32, depth=1, heads=2, ffn_dim=64, cond_dim=64, cond_hidden=16)
    cfg = SeparatorConfig(codec=str(root / "codec"), text_encoder="hash", masker=masker)
    Separator(cfg, codec=MicaCodec(codec_cfg), text_encoder=get_text_encoder("hash")).save(
        root / "sep")
    tiny_encoder(config=AudioEncoderConfig(**{**TINY.__dict__, "embed_dim": 64})).save(root / "enc")
    tiny_encoder().save(root / "enc32")
    return root


def write(path, x):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, SR, subtype="FLOAT")
    return path


def run(argv, capsys):
    code = cli.main(["separate", *map(str, argv)])
    return code, *capsys.readouterr()


def test_query_audio_separates_by_example_named_after_it(models, tmp_path, capsys):
    rng = np.random.default_rng(0)
    mix = write(tmp_path / "street.wav", toy_sound(0, SR, rng) + toy_sound(2, SR, rng))
    example = write(tmp_path / "examples" / "Low Hum.wav", toy_sound(0, SR // 2, rng))
    code, _, err = run([mix, "--query-audio", example, "--audio-encoder", models / "enc",
                          "--residual", "-o", tmp_path / "out", "--model", models / "sep"], capsys)
    assert code == 0, err
    target, _ = sf.read(tmp_path / "out" / "street" / "low_hum.wav", dtype="float32")
    residual, _ = sf.read(tmp_path / "out" / "street" / "low_hum_residual.wav", dtype="float32")
    np.testing.assert_allclose(target + residual, sf.read(mix)[0], atol=3e-3)
    sep = Separator.load(models / "sep", text_encoder=get_text_encoder("hash"))
    enc = AudioEncoder.load(models / "enc")
    query = enc.embed(sf.read(example, dtype="float32")[0])[None]
    expected = sep.separate(sf.read(mix, dtype="float32")[0], ["x"],
                            cond=sep.anchor_queries(query, AUDIO_QUERY_WEIGHT))
    np.testing.assert_allclose(target, expected["target"][0, 0].numpy(), atol=1e-3)
    code, _, err = run([mix, "--query-audio", example, "--audio-encoder", models / "enc",
                        "--query-anchor-weight", "0", "-o", tmp_path / "raw", "--model",
                        models / "sep"], capsys)
    assert code == 0, err
    raw, _ = sf.read(tmp_path / "raw" / "street" / "low_hum.wav", dtype="float32")
    expected = sep.separate(sf.read(mix, dtype="float32")[0], ["x"], cond=query)
    np.testing.assert_allclose(raw, expected["target"][0, 0].numpy(), atol=1e-3)


def test_query_audio_bad_input_exits_2_with_one_line(models, tmp_path, capsys):
    mix = write(tmp_path / "m.wav", toy_sound(2, SR, np.random.default_rng(0)))
    example = write(tmp_path / "ex.wav", toy_sound(0, SR, np.random.default_rng(1)))
    common = ["-o", tmp_path / "out", "--model", models / "sep"]
    cases = [
        ([mix, "--query-audio", example, "-p", "dog", *common], "do not combine"),
        ([mix, "--audio-encoder", models / "enc", "-p", "dog", *common], "add --query-audio"),
        ([mix, "--query-anchor-weight", "0.5", "-p", "dog", *common], "add --query-audio"),
        ([mix, "--query-audio", example, "--query-anchor-weight", "1.5", *common], "from 0 to 1"),
        ([mix, "--query-audio", example, "--audio-encoder", models / "enc32", *common],
         "one shared space"),
        ([mix, "--query-audio", tmp_path / "nope.wav", "--audio-encoder", models / "enc",
          *common], "nope.wav"),
    ]
    for argv, message in cases:
        code, _, err = run(argv, capsys)
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
        assert not (tmp_path / "out").exists()


def test_the_python_api_takes_audio_examples_as_the_cli_does(models, tmp_path, capsys):
    import codecsep

    rng = np.random.default_rng(0)
    mix = write(tmp_path / "street.wav", toy_sound(0, SR, rng) + toy_sound(2, SR, rng))
    example = write(tmp_path / "Low Hum.wav", toy_sound(0, SR // 2, rng))
    code, _, err = run([mix, "--query-audio", example, "--audio-encoder", models / "enc",
                        "-o", tmp_path / "out", "--model", models / "sep"], capsys)
    assert code == 0, err
    by_cli, _ = sf.read(tmp_path / "out" / "street" / "low_hum.wav", dtype="float32")
    out = codecsep.separate(str(mix), model=str(models / "sep"), query_audio=str(example),
                            audio_encoder=str(models / "enc"))
    assert out["prompts"] == ["Low Hum"] and out["presence"] is None
    np.testing.assert_allclose(out["target"][0, 0].numpy(), by_cli, atol=1e-3)
    with pytest.raises(CodecSepError, match="not both"):
        codecsep.separate(str(mix), "hum", model=str(models / "sep"), query_audio=[str(example)])
    with pytest.raises(CodecSepError, match="give prompts"):
        codecsep.separate(str(mix), model=str(models / "sep"))
    with pytest.raises(CodecSepError, match="from 0 to 1"):
        codecsep.separate(str(mix), model=str(models / "sep"), query_audio=[str(example)],
                          audio_encoder=str(models / "enc"), query_anchor_weight=2.0)


def test_add_under_sums_powers_with_the_other_clip_at_the_asked_level():
    from codecsep.train.audio_encoder import add_under

    rng = np.random.default_rng(0)
    a = rng.uniform(-60, -20, (16, 50)).astype(np.float32)
    b = rng.uniform(-60, -20, (16, 50)).astype(np.float32)
    out = add_under(a, b, snr_db=10.0)
    power = 10 ** (out / 10)
    pa, pb = 10 ** (a / 10), power - 10 ** (a / 10)  # what was added
    assert (out >= a - 1e-4).all() and out.dtype == np.float32
    assert 10 * np.log10(pa.mean() / pb.mean()) == pytest.approx(10.0, abs=1e-3)
    assert np.abs(add_under(a, b, snr_db=80.0) - a).max() < 0.01  # far below: nothing changes
