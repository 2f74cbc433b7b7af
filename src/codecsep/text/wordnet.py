"""A reader of Princeton WordNet 3.0's noun database files, and the prompt aliases built from it.

WordNet ships in Debian as `wordnet-base` (`/usr/share/wordnet`: `index.noun`, `data.noun`,
the format of `wndb(5)`). Only nouns are read: a sense is named `lemma.n.NN` as NLTK names it
(NN counts the lemma's senses in `index.noun` order, most frequent first).

`label_aliases` turns one hand-picked sense per corpus label into more ways of naming it, by a
fixed construction: the sense's lemmas, its direct hyponyms' lemmas, the nouns derivationally
related to its lemmas (violin -> violinist) and its gloss (the definition, without examples).
A phrase that names two labels, or that is already a training caption, is dropped. The aliases
can feed the prompt anchors (`text.anchors`: more keys, each pointing at its label's captions;
`alias_groups`) and the training prompts (`train.separator.training_aliases`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import CodecSepError

DEFAULT_DIR = "/usr/share/wordnet"


@dataclass(frozen=True)
class Synset:
    offset: str
    lemmas: tuple[str, ...]  # as written, underscores for spaces
    pointers: tuple[tuple[str, str, str, int, int], ...]  # (symbol, offset, pos, source, target)
    gloss: str

    def words(self) -> list[str]:
        return [lemma_text(w) for w in self.lemmas]

    def definition(self) -> str:
        """The gloss without its quoted examples: the text before the first '; "'."""
        return re.split(r';\s*"|^"', self.gloss, maxsplit=1)[0].strip().rstrip(";").strip()


def lemma_text(word: str) -> str:
    """WordNet's "French_horn" -> "french horn"."""
    return word.replace("_", " ").lower()


class WordNet:
    """The noun part of a WordNet 3.0 database directory, read once."""

    def __init__(self, directory: str | Path = DEFAULT_DIR):
        root = Path(directory)
        index, data = root / "index.noun", root / "data.noun"
        for f in (index, data):
            if not f.is_file():
                raise CodecSepError(f"WordNet: {f} not found (Debian: apt-get install wordnet-base, "
                                    f"or pass the directory that holds index.noun and data.noun)")
        self.senses: dict[str, list[str]] = {}
        for line in index.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(" ") or not line.strip():
                continue  # the licence header
            f = line.split()
            n_synsets, n_ptrs = int(f[2]), int(f[3])
            self.senses[f[0]] = f[6 + n_ptrs: 6 + n_ptrs + n_synsets]
        self._data = data.read_bytes()

    def synset(self, offset: str) -> Synset:
        """The synset at byte `offset` of data.noun (offsets are byte positions in that file)."""
        end = self._data.index(b"\n", int(offset))
        line = self._data[int(offset):end].decode("utf-8", errors="replace")
        head, _, gloss = line.partition(" | ")
        f = head.split()
        if f[0] != offset.zfill(8):
            raise CodecSepError(f"WordNet: data.noun has no synset at offset {offset}")
        n_words = int(f[3], 16)
        lemmas = tuple(f[4 + 2 * i] for i in range(n_words))
        i = 4 + 2 * n_words
        n_ptrs = int(f[i])
        pointers = []
        for j in range(n_ptrs):
            sym, off, pos, st = f[i + 1 + 4 * j: i + 5 + 4 * j]
            pointers.append((sym, off, pos, int(st[:2], 16), int(st[2:], 16)))
        return Synset(f[0], lemmas, tuple(pointers), gloss.strip())

    def sense(self, name: str) -> Synset:
        """"violin.n.01" -> its synset."""
        m = re.fullmatch(r"(.+)\.n\.(\d+)", name)
        if not m:
            raise CodecSepError(f"WordNet sense {name!r}: expected LEMMA.n.NN")
        lemma, k = m.group(1).replace(" ", "_").lower(), int(m.group(2))
        offsets = self.senses.get(lemma, [])
        if not 1 <= k <= len(offsets):
            raise CodecSepError(f"WordNet has {len(offsets)} noun senses of {lemma!r}, not {k}")
        return self.synset(offsets[k - 1])

    def related(self, synset: Synset, symbol: str) -> list[Synset]:
        """The noun synsets `synset` points at with `symbol` ("~" hyponym, "+" derivation)."""
        return [self.synset(off) for sym, off, pos, _, _ in synset.pointers
                if sym == symbol and pos == "n"]


def sense_aliases(wn: WordNet, name: str) -> list[str]:
    """The construction, for one sense: its lemmas, its direct hyponyms' lemmas, the nouns
    derivationally related to it, its definition; in that order, without repeats."""
    s = wn.sense(name)
    out = s.words()
    for h in wn.related(s, "~"):
        out += h.words()
    for sym, off, pos, src, tgt in s.pointers:
        if sym == "+" and pos == "n":  # a lexical pointer: source word -> target word
            target = wn.synset(off)
            out += [lemma_text(target.lemmas[tgt - 1])] if tgt else target.words()
    out.append(s.definition().lower())
    return list(dict.fromkeys(a for a in out if a))


def label_aliases(wn: WordNet, senses: dict[str, str | tuple[str, ...]],
                  captions: dict[str, list[str]]) -> dict[str, list[str]]:
    """label -> its aliases from its sense(s) in `senses`; an alias that two labels share, or
    that is a training caption of any label, is dropped."""
    raw = {label: [a for name in ((s,) if isinstance(s, str) else s) for a in sense_aliases(wn, name)]
           for label, s in senses.items()}
    taken = {c.lower() for caps in captions.values() for c in caps}
    owners: dict[str, set[str]] = {}
    for label, aliases in raw.items():
        for a in aliases:
            owners.setdefault(a, set()).add(label)
    return {label: [a for a in dict.fromkeys(aliases) if len(owners[a]) == 1 and a not in taken]
            for label, aliases in raw.items()}


def corpus_aliases(labels, directory: str | Path = DEFAULT_DIR) -> dict[str, list[str]]:
    """`label_aliases` for those of `labels` that have a sense in `data.captions.WORDNET_SENSES`,
    against the corpus captions (`data.captions.CAPTIONS`)."""
    from ..data.captions import CAPTIONS, WORDNET_SENSES

    senses = {lab: WORDNET_SENSES[lab] for lab in labels if lab in WORDNET_SENSES}
    return label_aliases(WordNet(directory), senses, CAPTIONS)


def alias_groups(texts, directory: str | Path = DEFAULT_DIR):
    """The prompt-anchor alias groups (`text.anchors.AliasGroup`) of every corpus label whose
    captions (`data.captions.CAPTIONS`) are all among `texts` (a checkpoint's anchor captions);
    labels left with no alias are left out."""
    from ..data.captions import CAPTIONS
    from .anchors import AliasGroup

    known = set(texts)
    aliases = corpus_aliases([lab for lab, caps in CAPTIONS.items() if set(caps) <= known], directory)
    return tuple(AliasGroup(tuple(CAPTIONS[lab]), tuple(names)) for lab, names in aliases.items() if names)
