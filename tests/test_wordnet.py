"""The WordNet reader on a small database written in WordNet 3.0's format (wndb(5)), the aliases
built from it, and the anchors that use them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from codecsep.checkpoint import config_from_dict
from codecsep.errors import CodecSepError
from codecsep.text.anchors import AliasGroup, PromptAnchors, anchor_embeddings, anchor_table, apply_anchors
from codecsep.text.wordnet import WordNet, label_aliases, sense_aliases

HEADER = "  1 This software and database is being provided to you, the LICENSEE, by\n"
# key -> (lemmas, pointers (symbol, key, pos, source/target), gloss)
SYNSETS = {
    "violin": (["violin", "fiddle"], [("@", "instrument", "n", "0000"), ("~", "strad", "n", "0000"),
                                       ("+", "violinist", "n", "0101"), ("+", "fiddle_v", "v", "0201")],
               'bowed stringed instrument; "a violin solo"'),
    "strad": (["Stradavarius", "strad"], [("@", "violin", "n", "0000")], "a violin made by Stradavari"),
    "violinist": (["violinist", "fiddler"], [("+", "violin", "n", "0101")], "a musician who plays the violin"),
    "instrument": (["musical_instrument", "instrument"], [("~", "violin", "n", "0000")],
                   "any of various devices to make music"),
    "organ_body": (["organ"], [], "a part of an animal"),
    "organ_music": (["organ", "pipe_organ"], [("+", "organist", "n", "0101")], "wind instrument with pipes"),
    "organist": (["organist"], [("+", "organ_music", "n", "0101")], "a person who plays an organ"),
}
SENSES = {"violin": ["violin"], "fiddle": ["violin"], "organ": ["organ_body", "organ_music"],
          "pipe_organ": ["organ_music"], "strad": ["strad"], "stradavarius": ["strad"],
          "violinist": ["violinist"], "fiddler": ["violinist"], "organist": ["organist"],
          "musical_instrument": ["instrument"], "instrument": ["instrument"]}


def write_wordnet(root: Path) -> Path:
    """index.noun and data.noun in the official layout: data lines start with their byte offset."""
    order = list(SYNSETS)
    offsets = {k: 0 for k in order}
    for _ in range(2):  # offsets depend on the lines' lengths, which depend on the offsets' digits
        data, pos = HEADER, len(HEADER.encode())
        for k in order:
            lemmas, ptrs, gloss = SYNSETS[k]
            words = " ".join(f"{w} 0" for w in lemmas)
            p = " ".join(f"{s} {offsets[t] if t in offsets else 0:08d} {ps} {st}" for s, t, ps, st in ptrs)
            line = f"{pos:08d} 06 n {len(lemmas):02x} {words} {len(ptrs):03d} {p} | {gloss}  \n"
            offsets[k] = pos
            data += line
            pos += len(line.encode())
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.noun").write_text(data)
    index = HEADER + "".join(f"{lemma} n {len(keys)} 0 {len(keys)} 0 " + " ".join(f"{offsets[k]:08d}" for k in keys)
                             + "  \n" for lemma, keys in sorted(SENSES.items()))
    (root / "index.noun").write_text(index)
    return root


def test_the_reader_finds_senses_lemmas_pointers_and_glosses(tmp_path):
    wn = WordNet(write_wordnet(tmp_path / "wn"))
    violin = wn.sense("violin.n.01")
    assert violin.words() == ["violin", "fiddle"]
    assert violin.definition() == "bowed stringed instrument"  # the example goes
    assert [s.words() for s in wn.related(violin, "~")] == [["stradavarius", "strad"]]
    assert wn.sense("organ.n.02").words() == ["organ", "pipe organ"]  # senses in index order
    with pytest.raises(CodecSepError, match="2 noun senses"):
        wn.sense("organ.n.03")
    with pytest.raises(CodecSepError, match="LEMMA.n.NN"):
        wn.sense("organ")
    with pytest.raises(CodecSepError, match="wordnet-base"):
        WordNet(tmp_path / "nowhere")


def test_aliases_follow_the_construction_and_drop_shared_or_taken_phrases(tmp_path):
    wn = WordNet(write_wordnet(tmp_path / "wn"))
    # lemmas, direct hyponyms, the derivation's target word (not the verb), the definition
    assert sense_aliases(wn, "violin.n.01") == ["violin", "fiddle", "stradavarius", "strad", "violinist",
                                                "bowed stringed instrument"]
    captions = {"violin": ["violin", "a violin playing"], "organ": ["organ", "pipe organ music"]}
    out = label_aliases(wn, {"violin": "violin.n.01", "organ": "organ.n.02"}, captions)
    assert out["violin"] == ["fiddle", "stradavarius", "strad", "violinist", "bowed stringed instrument"]
    assert out["organ"] == ["pipe organ", "organist", "wind instrument with pipes"]  # "organ" is a caption
    shared = label_aliases(wn, {"a": "violin.n.01", "b": "violin.n.01"}, {})
    assert shared == {"a": [], "b": []}  # every phrase names two labels


def test_an_alias_pulls_toward_its_labels_captions_and_travels_in_the_config():
    g = torch.Generator().manual_seed(0)
    table = {t: F.normalize(torch.randn(16, generator=g), dim=0)
             for t in ("violin", "a violin playing", "rain", "rainfall", "fiddler")}

    def embed(texts):
        return torch.stack([table[t] for t in texts])

    group = AliasGroup(("violin", "a violin playing"), ("fiddler",))
    anchors = PromptAnchors(("violin", "a violin playing", "rain"), 0.5, 0.02, (group,))
    keys, values = anchor_table(anchors, embed)
    assert keys.shape == values.shape == (4, 16)
    torch.testing.assert_close(values[3], F.normalize(embed(["violin", "a violin playing"]).mean(0), dim=0))
    # the alias itself as a prompt: pulled toward the violin captions' mean, not toward itself
    out = apply_anchors(embed(["fiddler"]), anchors, embed, {})
    plain = anchor_embeddings(embed(["fiddler"]), embed(["violin", "a violin playing", "rain"]), 0.5, 0.02)
    assert float(out @ values[3]) > float(plain @ values[3])
    # a training caption stays where it was (its own key dominates at temperature 0.02)
    torch.testing.assert_close(apply_anchors(embed(["rain"]), anchors, embed, {}), embed(["rain"]), atol=1e-3, rtol=0)
    # JSON round trip (nested groups) and the checks
    back = config_from_dict(PromptAnchors, json.loads(json.dumps(
        {"texts": list(anchors.texts), "weight": 0.5, "temperature": 0.02,
         "aliases": [{"captions": list(group.captions), "names": list(group.names)}]})))
    assert back == anchors and back.n_aliases == 1 and hash(back)
    with pytest.raises(CodecSepError, match="anchor texts"):
        PromptAnchors(("rain",), 0.5, 0.02, (group,))


def test_set_inference_adds_wordnet_aliases_to_a_checkpoint(tmp_path):
    from codecsep.separators.separator import Separator
    from helpers import TINY_MASKER, save_member

    wn = write_wordnet(tmp_path / "wn")
    ckpt = save_member(tmp_path, "m", TINY_MASKER, seed=0)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["config"]["anchors"] = {"texts": ["violin", "a violin playing", "someone playing the violin",
                                          "violin music", "rain"], "weight": 0.5, "temperature": 0.02}
    (ckpt / "config.json").write_text(json.dumps(cfg))
    script = Path(__file__).resolve().parents[1] / "scripts" / "set_inference.py"
    run = subprocess.run([sys.executable, str(script), str(ckpt), "--like", str(ckpt), "--wordnet", str(wn)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    anchors = Separator.load(ckpt).anchors
    # only "violin" has all its corpus captions among the anchors; its sense in the fixture
    assert [g.names for g in anchors.aliases] == [("fiddle", "stradavarius", "strad", "violinist",
                                                   "bowed stringed instrument")]
    assert ":a5" in Separator.load(ckpt).inference_tag()
    bad = subprocess.run([sys.executable, str(script), str(ckpt), "--like", str(ckpt), "--wordnet",
                          str(tmp_path / "none")], capture_output=True, text=True)
    assert bad.returncode != 0 and "wordnet-base" in bad.stderr


def test_training_prompts_draw_names_but_never_a_held_out_word(tmp_path):
    from codecsep.text.base import get_text_encoder
    from codecsep.train.separator import PromptTable, SeparatorRecipe, training_aliases

    import numpy as np

    names = training_aliases(str(write_wordnet(tmp_path / "wn")), ["violin", "organ", "not a label"])
    # the held-out paraphrases of violin hold "violinist" and "fiddle"; organ's hold "organist"
    assert names["violin"] == ["stradavarius", "strad", "bowed stringed instrument"]
    assert "organist" not in names["organ"] and "pipe organ" in names["organ"]
    encoder = get_text_encoder("hash", dim=32)
    caps = {"violin": ("violin", "a violin playing")}
    table = {p: PromptTable(caps, encoder, aliases={"violin": names["violin"]}, p_alias=p) for p in (0.0, 1.0)}
    rng = np.random.default_rng(0)

    def drawn(t):
        inverse = {i: text for text, i in t.index.items()}
        return {inverse[int((t.embeddings == t.sample("violin", rng)).all(1).nonzero()[0])] for _ in range(60)}

    assert all("violin" in d for d in drawn(table[0.0]))
    assert all("strad" in d or "bowed" in d for d in drawn(table[1.0]))
    with pytest.raises(CodecSepError, match="p_alias"):
        SeparatorRecipe(p_alias=1.5)
