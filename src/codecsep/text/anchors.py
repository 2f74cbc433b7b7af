"""Prompt anchoring: pull a prompt's embedding toward the training prompts it resembles.

A masker only ever saw the embeddings of its training captions. A paraphrase it never saw
("a fiddle being played") lands elsewhere in the sentence encoder's space, and separation drops
(-1.9 dB on the valid split for two sources). Anchoring blends each prompt embedding `e` with a
softmax-weighted mean of the training-caption embeddings `A`:

    w = softmax(e . A^T / temperature),   e' = normalize((1 - weight) * e + weight * w A)

A prompt that is a training caption stays where it is; a paraphrase moves toward the captions
it is closest to. Aliases (`AliasGroup`: other names of one label, e.g. from WordNet,
`text.wordnet`) add keys without adding targets: a prompt close to "a violinist" is pulled toward
the normalized mean of the violin captions' embeddings, which the masker was trained on.
The captions, the aliases and the two numbers live in the separator's config (`PromptAnchors`),
so every checkpoint carries the prompts it was trained on; `weight = 0` switches anchoring off.
Audio queries, embedded in the same text space by the audio encoder, are anchored to the same
captions with a weight of their own (`AUDIO_QUERY_WEIGHT`, `separate --query-anchor-weight`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import CodecSepError

# Chosen on the VALID split with held-out paraphrases (results/experiments/anchors): weight 0.3-0.5
# and temperature 0.02-0.05 all gave +0.6-1.0 dB; label prompts moved by < 0.05 dB.
TRAINED_WEIGHT = 0.5
TRAINED_TEMPERATURE = 0.02
# Audio queries (`separate --query-audio`), anchored the same way: chosen on VALID between 0.5 and
# 1.0 (+1.3 / +1.1 dB over none), then +0.47 / +0.50 dB on TEST two- / three-source
# (results/experiments/README.md, session 22, G).
AUDIO_QUERY_WEIGHT = 0.5


@dataclass(frozen=True)
class AliasGroup:
    """Other names of one label: each is a key that pulls toward the label's captions."""
    captions: tuple[str, ...]  # the label's training captions (all among the anchors' texts)
    names: tuple[str, ...]


@dataclass(frozen=True)
class PromptAnchors:
    texts: tuple[str, ...] = ()  # the training captions (no templates: they add nothing)
    weight: float = 0.0  # 0: off; chosen on the valid split
    temperature: float = 0.02
    aliases: tuple[AliasGroup, ...] = field(default=(), metadata={"of": AliasGroup})

    def __post_init__(self):
        if not 0.0 <= self.weight <= 1.0:
            raise CodecSepError(f"anchor weight must be in [0, 1], got {self.weight:g}")
        if self.temperature <= 0:
            raise CodecSepError(f"anchor temperature must be > 0, got {self.temperature:g}")
        known = set(self.texts)
        for g in self.aliases:
            missing = [c for c in g.captions if c not in known]
            if not g.captions or missing:
                raise CodecSepError(f"alias group {g.names[:3]}: its captions must be anchor texts "
                                    f"(missing: {missing or 'all'})")

    @property
    def n_aliases(self) -> int:
        return sum(len(g.names) for g in self.aliases)

    @property
    def active(self) -> bool:
        return self.weight > 0 and bool(self.texts)

    def labels(self) -> list[str]:
        """The corpus labels (`data.captions`) whose captions are among the texts: the sounds a
        checkpoint was trained on, sorted ([] when it carries no captions)."""
        from ..data.captions import CAPTIONS

        texts = set(self.texts)
        return sorted(label for label, captions in CAPTIONS.items() if texts & set(captions))


def anchor_embeddings(emb: torch.Tensor, anchors: torch.Tensor, weight: float,
                      temperature: float, values: torch.Tensor | None = None) -> torch.Tensor:
    """(P, E) unit prompt embeddings, (N, E) unit anchor embeddings (the keys) -> (P, E)
    anchored, unit; `values` (N, E), what each key pulls toward, default the keys themselves."""
    if weight == 0 or anchors.numel() == 0:
        return emb
    pull = torch.softmax(emb @ anchors.T / temperature, dim=-1) @ (anchors if values is None else values)
    return F.normalize((1 - weight) * emb + weight * pull, dim=-1)


def anchor_table(anchors: PromptAnchors, embed_texts) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys, values), (N, E) each: the captions pull toward themselves, every alias toward the
    normalized mean of its group's captions."""
    caps = embed_texts(list(anchors.texts)).float()
    if not anchors.aliases:
        return caps, caps
    row = {t: i for i, t in enumerate(anchors.texts)}
    keys = embed_texts([n for g in anchors.aliases for n in g.names]).float()
    values = torch.cat([F.normalize(caps[[row[c] for c in g.captions]].mean(0), dim=-1)
                        .expand(len(g.names), -1) for g in anchors.aliases])
    return torch.cat([caps, keys]), torch.cat([caps, values])


def cached_table(anchors: PromptAnchors, embed_texts, cache: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """`anchor_table`, computed once per caption set and kept in `cache`."""
    key = (anchors.texts, anchors.aliases)
    if key not in cache:
        cache[key] = anchor_table(anchors, embed_texts)
    return cache[key]


def apply_anchors(emb: torch.Tensor, anchors: PromptAnchors, embed_texts, cache: dict) -> torch.Tensor:
    """`emb` anchored as `anchors` say; the anchor embeddings (`embed_texts(list) -> (N, E)`) are
    computed once per caption set and kept in `cache`."""
    if not anchors.active:
        return emb
    keys, values = cached_table(anchors, embed_texts, cache)
    return anchor_embeddings(emb, keys, anchors.weight, anchors.temperature, values)


# Below this cosine to every training caption, a prompt is reported as far from every trained sound:
# 3% of the held-out paraphrases of trained sounds fall below it (0.34-0.49), and so do nonsense
# or unrelated prompts ("qwzxv" 0.28, "snoring" 0.30, "crickets" 0.36, "hello" 0.35) and some
# untrained sounds ("cat meowing" 0.41); many untrained sounds are not (see `nearest_sounds`).
FAR_SIMILARITY = 0.45


def key_labels(anchors: PromptAnchors) -> list[str | None]:
    """The corpus label of each row of `anchor_table(anchors)`'s keys (None: not a corpus caption)."""
    from ..data.captions import CAPTIONS

    label_of = {c: label for label, captions in CAPTIONS.items() for c in captions}
    return ([label_of.get(t) for t in anchors.texts]
            + [label_of.get(g.captions[0]) for g in anchors.aliases for _ in g.names])


def nearest_sounds(emb: torch.Tensor, anchors: PromptAnchors, embed_texts,
                   cache: dict) -> list[tuple[str | None, float]]:
    """(P, E) unit embeddings -> per row (the trained sound of the most similar training caption
    or alias, that cosine). A cue for the user, not a verdict: similarity does not tell a
    paraphrase of a trained sound from an untrained sound ("car horn" is 0.81 from "war horn",
    while 5% of held-out paraphrases are below 0.49), and the nearest caption's sound is wrong for
    15% of held-out paraphrases (session 25). [] when the anchors carry no captions."""
    if not anchors.texts:
        return []
    sims = emb.float() @ cached_table(anchors, embed_texts, cache)[0].T
    best, rows = sims.max(dim=-1)
    labels = key_labels(anchors)
    return [(labels[r], float(b)) for r, b in zip(rows.tolist(), best)]


def training_anchors(clips, weight: float = TRAINED_WEIGHT,
                     temperature: float = TRAINED_TEMPERATURE) -> PromptAnchors:
    """Anchors on the sorted distinct captions of the clips a model trains on (manifest rows)."""
    return PromptAnchors(tuple(sorted({c for clip in clips for c in clip.captions})),
                         weight, temperature)
