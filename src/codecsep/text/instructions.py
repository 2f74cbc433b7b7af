"""Free-form separation requests -> `Instruction(task, targets)`.

The idea comes from HSM-TSS (Yin et al., 2025, Sec. III-F): split a request into an operation,
*extract* or *remove*, and descriptions of the sounds it applies to, so the text encoder only ever
sees descriptions. HSM-TSS uses an LLM; `RuleInstructionParser` is a dependency-free rule parser
behind the `InstructionParser` protocol, so an LLM-backed parser can replace it later.

How a request is read (lower-cased, contractions expanded: "don't" -> "do not"):
1. It is cut into segments. A segment starts where a *head* stands at the start of the text or
   of a clause (after , ; . ! ? and/but/then/while): fillers ("please", "can you", "I want to"),
   negations and cue verbs ("remove", "get rid of", "isolate", "keep only", "no more", "just").
   A cue verb counts only in that position, so "water drops" or "a man keeps talking" are read
   as descriptions. Misspelt head words are corrected with difflib plus a one-edit rule
   ("remvoe" -> "remove"); words that name sounds are never corrected into verbs.
2. A head's task: the last strong cue wins over weak ones ("just remove" -> remove; "I only
   want to hear" -> extract); an odd number of negations flips it ("don't keep" -> remove,
   "I don't want" -> remove); a head with no cue keeps the previous task (default extract).
   A trailing participle or particle overrides it: "I want the dog removed", "make the dog go
   away", "turn the music off".
3. Inside a segment, "except / other than / apart from / not / instead of" flip the task for
   what follows, "without / minus" switch to remove, and "but" flips after "everything/all"
   ("all but the piano"). "Everything", "the rest", "all other sounds" (and "the song" before
   "without/except") are *complements*: they name no target, they say the other side is kept
   or removed.
4. Descriptions are split at "and", "or", commas, "plus", "as well as"; determiners, politeness
   and containers ("from the recording", "in the background") are stripped.
5. Combining segments: if only one task has targets, that task wins. If both have targets:
   a main clause beats an exception clause ("remove the drums but not the piano" -> remove
   drums; "the birds without the traffic" -> extract birds); then a removed complement means
   extract ("keep the piano, remove the rest"); otherwise **the explicit keep wins**:
   "remove the speech and keep the music" -> extract ("music",), since keeping the music is
   what the user asked to hear (and removing the speech is implied when those are the two).
   A pronoun target takes the clause before ("I hate the traffic, get rid of it"), and a bare
   remark naming no known sound is dropped next to explicit targets ("it's too noisy, ...").
   A request with no target at all ("remove", "remove everything") is a `PromptError`.
6. With a label vocabulary, each description maps to the closest label: exact match, then
   word-concept overlap through a small synonym table ("vocals" -> singing, "the dog" ->
   "dog barking", "wind noise" -> "wind"), then text-embedding cosine >= `threshold` when an
   encoder is given (ties between labels are broken the same way); otherwise the description
   is kept as written. Descriptions' typos are fixed against known sound words ("dgo" -> "dog").
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import torch

from .base import PromptError, TextEncoder, normalize_prompt

Task = Literal["extract", "remove"]
EXTRACT: Task = "extract"
REMOVE: Task = "remove"
TASKS = (EXTRACT, REMOVE)


@dataclass(frozen=True)
class Instruction:
    """A parsed request: what to do (`task`) with which sounds (`targets`, 1 or more)."""

    task: Task
    targets: tuple[str, ...]

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if not self.targets or not all(isinstance(t, str) and t.strip() for t in self.targets):
            raise ValueError(f"an instruction needs non-empty targets, got {self.targets!r}")

    @property
    def description(self) -> str:
        """One caption for the text encoder: "dog barking and car horn"."""
        return " and ".join(self.targets)


@runtime_checkable
class InstructionParser(Protocol):
    """Anything that turns a request into an `Instruction` (rules today, an LLM later)."""

    def parse(self, text: str) -> Instruction: ...


# =============================================================================================
# Lexicon
# =============================================================================================
@dataclass(frozen=True)
class _Cue:
    task: Task | None  # None: no task on its own ("turn", "make"); particles/postfix decide
    strong: bool = True  # a strong cue overrides weak ones in the same head
    particles: dict[str, Task] = field(default_factory=dict)  # "turn the music off"
    needs_context: bool = False  # gerunds that also describe sounds: "cutting wood"


def _words(spec: str) -> set[str]:
    return set(spec.split())


def _phrases(spec: str) -> list[tuple[str, ...]]:
    """'|'-separated phrases -> word tuples."""
    return [tuple(p.split()) for p in spec.split("|") if p.strip()]


def _cues(spec: str, task: Task | None, **kw) -> dict[tuple[str, ...], _Cue]:
    """'|'-separated phrases -> cue table entries."""
    return {p: _Cue(task, **kw) for p in _phrases(spec)}


_R, _E = REMOVE, EXTRACT
_OUT_R = {"out": _R, "away": _R, "off": _R}
_CUES: dict[tuple[str, ...], _Cue] = {
    **_cues(
        "remove|removes|removing|removal|removal of|delete|deleting|eliminate|"
        "eliminating|elimination of|erase|erasing|mute|muting|silence|silencing|suppress|"
        "suppressing|suppression of|cancel out|cancelling|canceling|kill|ditch|lose|exclude|"
        "omit|discard|subtract|hide|ignore|reduce|reducing|stop|stopping|dampen|attenuate|"
        "get rid of|getting rid of|take out|taking out|take away|taking away|cut out|"
        "cutting out|cut off|filter out|filtering out|strip out|strip away|block out|tune out|"
        "leave out|leaving out|drown out|hate|dislike|can not stand|clear out|clean out|turn off|turn down|switch off|"
        "shut off|shut up|do away with|no|no more|no longer|without|minus|avoid|quieten|touch",
        _R,
    ),
    **_cues("cut|filter|strip|block|cancel|drop", _R, particles=_OUT_R),
    **_cues(
        "cutting|dropping|killing|blocking|hiding|stripping|losing|ditching", _R, needs_context=True
    ),
    **_cues(
        "extract|extracting|extraction of|isolate|isolating|isolation of|keep only|keeping|"
        "retain|retaining|preserve|preserving|separate|separating|separation of|seperate|"
        "enhance|enhancing|boost|amplify|highlight|emphasize|emphasise|solo|focus on|"
        "focusing on|concentrate on|bring out|pull out|pick out|single out|turn up|clean up|"
        "save|recover|restore|do not touch|do not mind|leave alone",
        _E,
    ),
    **_cues("keep", _E, particles={"out": _R, "away": _R}),
    **_cues(
        "want|wanna|need|like|love|prefer|hear|hearing|listen|listen to|listening to|"
        "give me|let me hear|show me|find|play|only|just|nothing but|solely|purely|exclusively",
        _E,
        strong=False,
    ),
    **_cues("take|get|leave", _E, strong=False, particles=_OUT_R),
    **_cues("pull|bring|pick|single", None, particles={"out": _E, "up": _E}),
    **_cues(
        "turn|switch|shut|tune|drown|clean",
        None,
        particles={"off": _R, "down": _R, "out": _R, "up": _E, "on": _E},
    ),
    **_cues("make|have|let", None, strong=False),
}
_MAX_CUE = max(len(k) for k in _CUES)

_NEGATIONS = {"not", "never"}
_FILLERS = _words(
    "please kindly can could would will shall should you we i me us my help try to and then so "
    "also now go ahead let is it possible there a way be able mind hey hi hello ok okay yes um "
    "uh hmm well actually maybe perhaps simply quickly really do does did am are was "
    "wondering if for this that whether need"
)
# Postfix phrases ending a segment: "I want the dog removed", "make the dog go away".
_POSTFIX: dict[tuple[str, ...], Task] = {
    **dict.fromkeys(
        _phrases(
            "removed|muted|deleted|eliminated|erased|silenced|suppressed|cancelled|canceled|"
            "gone|taken out|cut out|filtered out|stripped out|blocked out|go away|gone away|"
            "disappear|vanish|stop|stopped|quiet|quieter|silent|turned off|switched off|removal|"
            "remover|suppression|cancellation|reduction|elimination|filtering|be gone|left out"
        ),
        _R,
    ),
    **dict.fromkeys(
        _phrases(
            "isolated|extracted|kept|louder|clearer|boosted|enhanced|amplified|extraction|"
            "isolation|separation|enhancement|separated"
        ),
        _E,
    ),
}
_MAX_POSTFIX = max(len(k) for k in _POSTFIX)

_SEPARATORS = {",", ";", ".", "!", "?", ":", "and", "or", "plus", "then", "while", "nor", "but"}
_MULTI_SEPARATORS = [("as", "well", "as"), ("along", "with"), ("together", "with"), ("and", "also")]
_FLIPS = [
    ("other", "than"),
    ("apart", "from"),
    ("aside", "from"),
    ("save", "for"),
    ("instead", "of"),
    ("rather", "than"),
    ("except",),
    ("excluding",),
    ("besides",),
    ("not",),
    ("but",),
]
_TO_REMOVE = {"without", "minus", "no"}

_PURE_COMPLEMENTS = {
    "everything",
    "everything else",
    "all",
    "all else",
    "all sounds",
    "all the sounds",
    "all other sounds",
    "all the other sounds",
    "all of it",
    "all noises",
    "all other noises",
    "the rest",
    "rest",
    "all the rest",
    "rest of it",
    "the rest of it",
    "anything",
    "anything else",
    "every sound",
    "every other sound",
    "other sounds",
    "the other sounds",
    "others",
    "the others",
    "it",
    "this",
    "that",
    "them",
    "everything around it",
}
_PRONOUNS = {"it", "them", "that", "this", "those", "these", "they"}
_WHOLE_NOUNS = {
    "recording",
    "audio",
    "clip",
    "track",
    "song",
    "mix",
    "mixture",
    "file",
    "video",
    "sample",
    "sound",
    "thing",
    "whole thing",
    "tape",
    "piece",
}

_LEAD_STRIP = _words(
    "the a an some any this that these those my our your his her its their of to only just also "
    "then and but or please can could would will you i we me us kindly hear be both for with "
    "is are there all more"
)
_LEAD_OF = {"sound", "sounds", "noise", "noises", "audio", "recording", "bit", "part", "voice"}
_TRAIL_STRIP = _phrases(
    "please|thanks|thank you|now|right now|too|also|completely|entirely|altogether|fully|"
    "totally|here|again|only|alone|anymore|any more|at all|as well|ok|okay|for me|for us|"
    "if possible|if you can|if you could|a bit|a little|a little bit|by itself|on its own|"
    "on their own|by themselves|in the background|in the back|sound|sounds|instead|"
    "from it|in it|in there|there|altogether|immediately|first|for good|and"
)
_TRAIL_AUX = {"to", "be", "is", "are", "been", "being", "get", "got", "go", "should", "can"}
_CONTAINER_PREPS = {"from", "in", "of", "on", "out"}

# Word -> concept, used to compare descriptions with labels (never shown to the user).
_SYNONYM_SPEC = {
    "dog": "dog dogs puppy puppies bark barks barking woof hound doggy canine growl growling",
    "cat": "cat cats kitten kitty meow meows meowing miaow purr purring",
    "bird": "bird birds birdsong chirp chirps chirping tweet tweeting songbird warble warbling",
    "speech": "speech speak speaks speaking speaker speakers talk talks talking voice voices "
    "dialogue dialog conversation narration narrator chatter chatting chat spoken lecture "
    "podcast announcement announcer words",
    "singing": "sing sings singing singer singers vocal vocals vocalist choir chorus",
    "music": "music musical song songs melody tune tunes soundtrack instrumental orchestra",
    "drums": "drum drums drumming drummer percussion snare cymbal cymbals hihat",
    "piano": "piano pianos pianist",
    "violin": "violin violins violinist fiddle",
    "guitar": "guitar guitars guitarist strum strumming",
    "rain": "rain raining rainfall rainy drizzle raindrop raindrops downpour",
    "wind": "wind winds windy breeze gust gusts gusting",
    "traffic": "traffic car cars vehicle vehicles road highway street",
    "engine": "engine engines motor motors idling revving",
    "horn": "horn horns honk honks honking",
    "footsteps": "footstep footsteps steps step walking stomping",
    "keyboard": "keyboard typing keystroke keystrokes keys typewriter",
    "gunshot": "gunshot gunshots gun guns gunfire shot shots shooting rifle pistol",
    "explosion": "explosion explosions explode exploding blast blasts boom bomb",
    "water": "water stream river brook creek splash splashing drip drips dripping faucet "
    "pouring bubbling",
    "fire": "fire fires flame flames crackling crackle burning campfire fireplace",
    "applause": "applause applaud applauding clap claps clapping cheer cheers cheering",
    "siren": "siren sirens ambulance",
    "laughter": "laugh laughs laughing laughter giggle giggling",
    "baby": "baby babies infant",
    "crying": "cry cries crying sob sobbing wail",
    "thunder": "thunder thunderstorm thunderclap",
    "sea": "sea ocean waves wave surf",
    "clock": "clock ticking tick tock",
    "airplane": "airplane aeroplane plane planes aircraft jet",
    "bell": "bell bells chime chimes",
    "cough": "cough coughs coughing",
    "door": "door doors knock knocking slam",
    "alarm": "alarm alarms",
    "insects": "insect insects cricket crickets cicada cicadas buzzing",
}
_SYNONYMS = {w: c for c, words in _SYNONYM_SPEC.items() for w in words.split()}
_GENERIC = _words(
    "noise noises sound sounds audio background loud loudly soft distant annoying constant "
    "heavy light faint little big small large some person people man men woman women male "
    "female guy guys someone somebody kid kids child children boy girl lady playing play plays "
    "played being heard the a an of in on at by with from to is are and or while that this "
    "very really lot lots one two three several many multiple"
)

_REWRITES = [
    (r"[\u2018\u2019\u02bc`]", "'"),
    (r"[\u201c\u201d]", '"'),
    (r"\bw/o\b", " without "),
    (r"\bw/", " with "),
    (r"&", " and "),
    (r"\+", " and "),
    (r"\bde-?nois(e|ing)\b", " remove the noise from "),
    (r"\bbird song", "birdsong"),
    (r"\bcan't\b|\bcannot\b|\bcant\b", "can not"),
    (r"\bwon't\b|\bwont\b", "will not"),
    (r"\bshan't\b", "shall not"),
    (r"n't\b", " not"),
    (r"\b(do|does|did|is|are|was|were|would|should|could|have|has)nt\b", r"\1 not"),
    (r"\blet's\b", "let us"),
    (r"'d\b", " would"),
    (r"'m\b", " am"),
    (r"'ll\b", " will"),
    (r"'re\b", " are"),
    (r"'ve\b", " have"),
    (r"\bit's\b", "it is"),
    (r"'s\b", ""),
    (r"\bwanna\b", "want to"),
    (r"\bgonna\b", "going to"),
    (r"\bgimme\b", "give me"),
    (r"\blemme\b", "let me"),
    (r"\b(pls|plz|plse|pleas)\b", "please"),
    (r"\bthx\b", "thanks"),
    (r"\bwhat (does|do) (.+) sound like\b", r"\2"),
    (r"\b(make it )?sounds? like\b", " "),
    (
        r"\b(should|must|does|do) not (be|belong) (there|here|in (it|there|this \w+|the \w+))",
        "removed",
    ),
    (r"\b(should|must) not be heard\b", "removed"),
    (r"\bu\b", "you"),
    (r"\bur\b", "your"),
    (r"\ba cappella\b", "only the vocals"),
]
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[,;.!?:]")


# =============================================================================================
# Normalising, tokenising and typo correction
# =============================================================================================
def _tokens(text: str) -> list[str]:
    text = normalize_prompt(text).lower()
    for pattern, repl in _REWRITES:
        text = re.sub(pattern, repl, text)
    return _TOKEN.findall(text)


def _one_edit(word: str, cand: str) -> bool:
    """Adjacent transposition, or one inserted/deleted letter (not a substitution)."""
    if len(word) == len(cand):
        diff = [i for i in range(len(word)) if word[i] != cand[i]]
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and word[diff[0]] == cand[diff[1]]
            and word[diff[1]] == cand[diff[0]]
        )
    short, long_ = sorted((word, cand), key=len)
    if len(long_) - len(short) != 1:
        return False
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def _correct(word: str, vocab: set[str], protected: set[str], min_len: int = 4) -> str | None:
    """Close word of `vocab` for a typo (difflib ratio >= 0.6 and one edit), else None.

    One edit = an adjacent transposition ("dgo"), or, for words of `min_len` letters or more, one
    inserted or deleted letter ("violn"); never a substitution ("drip" is not "drop").
    """
    if word in vocab or word in protected or not word.isalpha() or len(word) < 3:
        return None
    for cand in difflib.get_close_matches(word, vocab, n=5, cutoff=0.6):
        same_start = cand[0] == word[0]
        plural = cand == word + "s" or word == cand + "s"
        swap = len(cand) == len(word) and _one_edit(word, cand)
        if same_start and not plural and _one_edit(word, cand) and (swap or len(word) >= min_len):
            return cand
    return None


_HEAD_VOCAB = {w for k in _CUES for w in k} | _FILLERS | _NEGATIONS
_SOUND_WORDS = set(_SYNONYMS) | set(_SYNONYM_SPEC)


# =============================================================================================
# Segmenting
# =============================================================================================
@dataclass
class _Head:
    end: int
    task: Task | None
    negations: int
    particles: dict[str, Task]
    found: bool  # a cue or a negation was read


@dataclass
class _Segment:
    task: Task
    words: list[str]
    particles: dict[str, Task] = field(default_factory=dict)
    strong_head: bool = False  # "remove X from Y": "from Y" is a container, not a target
    before_flip: bool = False  # "the song without the vocals": the song is a complement
    negations: int = 0
    explicit: bool = True  # opened by a head or a flip word, not the implicit first segment
    exception: bool = False  # opened by "except / not / without": secondary to the main clause


def _match(tokens: list[str], i: int, table: dict) -> tuple[tuple[str, ...], object] | None:
    for n in range(min(_MAX_CUE, len(tokens) - i), 0, -1):
        key = tuple(tokens[i : i + n])
        if key in table:
            return key, table[key]
    return None


def _read_head(tokens: list[str], i: int, protected: set[str]) -> _Head:
    """Read fillers, negations and cues from position i (correcting typos in place)."""
    strong: Task | None = None
    weak: Task | None = None
    negations, particles, found, start = 0, {}, False, i
    while i < len(tokens):
        fixed = _correct(tokens[i], _HEAD_VOCAB, protected)
        if fixed is not None:
            tokens[i] = fixed
        hit = _match(tokens, i, _CUES)
        if hit and not (hit[1].needs_context and i == start):
            key, cue = hit
            if cue.task is not None and cue.strong:
                strong = cue.task
            elif cue.task is not None:
                weak = weak or cue.task
            particles = cue.particles or particles
            found, i = True, i + len(key)
        elif tokens[i] in _NEGATIONS:
            negations, found, i = negations + 1, True, i + 1
        elif tokens[i] in _FILLERS:
            i += 1
        else:
            break
    return _Head(i, strong or weak, negations, particles, found)


def _flip(task: Task) -> Task:
    return REMOVE if task == EXTRACT else EXTRACT


def _last_piece(words: list[str]) -> str:
    piece: list[str] = []
    for w in words:
        piece = [] if w in _SEPARATORS else piece + [w]
    return " ".join(piece)


def _segments(tokens: list[str], protected: set[str]) -> list[_Segment]:
    """Cut the token stream into segments, each with one task."""
    segs = [_Segment(EXTRACT, [], explicit=False)]
    i, clause_start = 0, True
    while i < len(tokens):
        if clause_start:
            clause_start = False
            head = _read_head(tokens, i, protected)
            if head.found:
                segs.append(_open_segment(segs[-1].task, head))
                i = head.end
                continue
        i, clause_start = _scan_word(tokens, i, segs)
    return [s for s in segs if s.words]


def _open_segment(previous: Task, head: _Head) -> _Segment:
    task = head.task or previous
    if head.negations % 2:
        task = _flip(task)
    return _Segment(
        task,
        [],
        head.particles,
        strong_head=head.task is not None,
        negations=head.negations,
        exception=head.task is None and head.negations % 2 == 1,  # "..., not the piano"
    )


def _scan_word(tokens: list[str], i: int, segs: list[_Segment]) -> tuple[int, bool]:
    """Consume one word (or marker) at i; return the next index and whether a clause starts."""
    seg, word = segs[-1], tokens[i]
    last = _last_piece(seg.words)
    for key in _FLIPS:
        if tuple(tokens[i : i + len(key)]) == key:
            if key == ("but",) and last not in _PURE_COMPLEMENTS | _WHOLE_NOUNS | {"nothing"}:
                break  # a conjunction: "remove the dog but keep the cat"
            seg.before_flip = True
            task = seg.task if last == "nothing" else _flip(seg.task)  # "nothing but" = only
            if last == "nothing":
                seg.words = seg.words[: len(seg.words) - 1]
            segs.append(_Segment(task, [], exception=True))
            return i + len(key), False
    if word in _TO_REMOVE:
        seg.before_flip = True
        segs.append(_Segment(REMOVE, [], exception=True))
        return i + 1, False
    for key in _MULTI_SEPARATORS:
        if tuple(tokens[i : i + len(key)]) == key:
            seg.words.append(",")
            return i + len(key), True
    seg.words.append(word)
    return i + 1, word in _SEPARATORS


# =============================================================================================
# Turning a segment into target phrases
# =============================================================================================
def _strip_trailing(words: list[str]) -> list[str]:
    changed = True
    while changed and words:
        changed = False
        while words and words[-1] in _SEPARATORS:
            words, changed = words[:-1], True
        for phrase in _TRAIL_STRIP:
            if len(words) > len(phrase) and tuple(words[-len(phrase) :]) == phrase:
                words, changed = words[: -len(phrase)], True
        if (
            len(words) >= 2
            and words[-1] in _WHOLE_NOUNS
            and (
                words[-2] in _CONTAINER_PREPS or (len(words) >= 3 and words[-3] in _CONTAINER_PREPS)
            )
        ):
            cut = -2 if words[-2] in _CONTAINER_PREPS else -3
            words, changed = words[:cut], True
    return words


def _piece_task(seg: _Segment, words: list[str]) -> tuple[Task | None, list[str]]:
    """A trailing particle ("turn the music off") or participle ("the dog removed"), if any."""
    words = _strip_trailing(words)
    override = None
    if len(words) > 1 and words[-1] in seg.particles:
        override, words = seg.particles[words[-1]], words[:-1]
    else:
        for n in range(min(_MAX_POSTFIX, len(words) - 1), 0, -1):
            if tuple(words[-n:]) in _POSTFIX:
                override, words = _POSTFIX[tuple(words[-n:])], words[:-n]
                break
    while len(words) > 1 and words[-1] in _TRAIL_AUX:
        words = words[:-1]
    if override is not None and seg.negations % 2:
        override = _flip(override)
    return override, words


def _piece_tasks(seg: _Segment, pieces: list[list[str]]) -> list[tuple[Task, list[str]]]:
    """Each piece's task; a trailing postfix covers the pieces before it without one
    ("I want the dog and the cat removed"; "the birds louder and the traffic quieter")."""
    read = [_piece_task(seg, p) for p in pieces]
    out, carried = [], None
    for override, words in reversed(read):
        carried = override or carried
        out.append((carried or seg.task, words))
    return out[::-1]


def _split_pieces(words: list[str], protected_phrases: set[str]) -> list[list[str]]:
    text = " ".join(words)
    for phrase in protected_phrases:  # labels that contain "and"/"or": "drum and bass"
        text = re.sub(rf"\b{re.escape(phrase)}\b", phrase.replace(" ", "_"), text)
    pieces, cur = [], []
    for w in text.split():
        if w in _SEPARATORS:
            pieces, cur = pieces + [cur], []
        else:
            cur.append(w.replace("_", " ") if "_" in w else w)
    return [p for p in pieces + [cur] if p]


def _clean_piece(words: list[str], strong_head: bool) -> str:
    if strong_head:  # "remove the dog from the recording", "separate the vocals from the music"
        for j, w in enumerate(words):
            if j > 0 and (w == "from" or (w == "out" and words[j + 1 : j + 2] == ["of"])):
                words = words[:j]
                break
    words = _strip_trailing(words)
    while True:
        if len(words) > 1 and " ".join(words) in _PURE_COMPLEMENTS:
            break
        if len(words) > 1 and words[0] in _LEAD_STRIP:
            words = words[1:]
        elif len(words) > 2 and words[0] in _LEAD_OF and words[1] == "of":
            words = words[2:]
        else:
            break
    return " ".join(words)


# =============================================================================================
# Label matching
# =============================================================================================
def _stem(word: str) -> str:
    if word in _SYNONYMS:
        return _SYNONYMS[word]
    stem = word
    if len(word) > 4 and word.endswith("ies"):
        stem = word[:-3] + "y"
    elif len(word) >= 6 and word.endswith("ing"):
        stem = word[:-3]
        if len(stem) > 2 and stem[-1] == stem[-2]:
            stem = stem[:-1]
    elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        stem = word[:-1]
    return _SYNONYMS.get(stem, stem)


def _concepts(text: str) -> frozenset[str]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    specific = [w for w in words if w not in _GENERIC]
    return frozenset(_stem(w) for w in (specific or words))


class LabelMatcher:
    """Maps a free description to the closest label of a vocabulary (or leaves it as is)."""

    def __init__(
        self,
        labels: Sequence[str] = (),
        encoder: TextEncoder | None = None,
        threshold: float = 0.6,
        min_overlap: float = 0.3,
    ):
        self.labels = tuple(dict.fromkeys(normalize_prompt(lab) for lab in labels))
        self.encoder, self.threshold, self.min_overlap = encoder, threshold, min_overlap
        self._lower = {lab.lower(): lab for lab in self.labels}
        self._concepts = [_concepts(lab) for lab in self.labels]
        self._label_emb: torch.Tensor | None = None
        self.words = {w for lab in self._lower for w in re.findall(r"[a-z0-9]+", lab)}

    def __call__(self, phrase: str) -> str:
        if not self.labels:
            return phrase
        if phrase.lower() in self._lower:
            return self._lower[phrase.lower()]
        return self._by_concepts(phrase) or self._by_embedding(phrase) or phrase

    def _by_concepts(self, phrase: str) -> str | None:
        mine = _concepts(phrase)
        scores = [len(mine & c) / len(mine | c) for c in self._concepts]
        best = max(scores)
        if best < self.min_overlap:
            return None
        tied = [lab for lab, s in zip(self.labels, scores) if s == best]
        if len(tied) == 1:
            return tied[0]
        return self._by_embedding(phrase, among=tied)  # ambiguous: let the encoder decide

    def _by_embedding(self, phrase: str, among: Sequence[str] | None = None) -> str | None:
        if self.encoder is None:
            return None
        if self._label_emb is None:
            self._label_emb = self.encoder.embed(list(self.labels))
        sims = self._label_emb @ self.encoder.embed([phrase])[0]
        if among is not None:
            keep = torch.tensor([lab in among for lab in self.labels])
            sims = torch.where(keep, sims, torch.full_like(sims, -2.0))
        best = int(sims.argmax())
        return self.labels[best] if float(sims[best]) >= self.threshold else None


# =============================================================================================
# The parser
# =============================================================================================
class RuleInstructionParser:
    """Rule-based `InstructionParser`; see the module docstring for the rules.

    labels: optional vocabulary that descriptions are mapped onto.
    encoder: optional text encoder for similarity matching (and tie-breaking) onto labels.
    threshold: minimum cosine similarity for an embedding match.
    """

    def __init__(
        self,
        labels: Sequence[str] = (),
        encoder: TextEncoder | None = None,
        threshold: float = 0.6,
    ):
        self.matcher = LabelMatcher(labels, encoder, threshold)
        self._sound_words = _SOUND_WORDS | self.matcher.words
        self._protected_phrases = {
            lab.lower()
            for lab in self.matcher.labels
            if set(lab.lower().split()) & (_SEPARATORS | {"as", "with"})
        }

    def parse(self, text: str) -> Instruction:
        segments = _segments(_tokens(text), self._sound_words)
        groups = [g for seg in segments for g in self._groups(seg)]
        _resolve_pronouns(groups)
        _drop_vague_bare_clauses(groups)
        extract = [t for g in groups if g.task == EXTRACT for t in g.targets]
        remove = [t for g in groups if g.task == REMOVE for t in g.targets]
        task = _combine(groups)
        if task is None:
            raise PromptError(f"no sound to extract or remove found in {text.strip()!r}")
        targets = extract if task == EXTRACT else remove
        return Instruction(task, tuple(dict.fromkeys(self.matcher(t) for t in targets)))

    def _groups(self, seg: _Segment) -> list[_Group]:
        pieces = _split_pieces(_strip_trailing(seg.words), self._protected_phrases)
        groups: dict[Task, _Group] = {}
        for task, piece in _piece_tasks(seg, pieces):
            group = groups.setdefault(task, _Group(task, seg.explicit, seg.exception))
            phrase = _clean_piece(piece, seg.strong_head)
            if phrase in _PRONOUNS:
                group.pronoun = True
            elif phrase in _PURE_COMPLEMENTS or (seg.before_flip and phrase in _WHOLE_NOUNS):
                group.complement = True
            elif phrase and phrase not in _LEAD_STRIP | _FILLERS:
                words = [_correct(w, self._sound_words, set(), 5) or w for w in phrase.split()]
                group.targets.append(" ".join(words))
                group.known.append(bool(set(words) & self._sound_words))
        return list(groups.values())


@dataclass
class _Group:
    """The targets of one segment, after cleaning (before label mapping)."""

    task: Task
    explicit: bool
    exception: bool
    targets: list[str] = field(default_factory=list)
    known: list[bool] = field(default_factory=list)  # names a sound word we know
    complement: bool = False
    pronoun: bool = False


def _resolve_pronouns(groups: list[_Group]) -> None:
    """Pronouns ("the dog is annoying, remove it") take the targets of the clause before."""
    for i, group in enumerate(groups):
        if group.pronoun and not group.targets:
            previous = next((g for g in reversed(groups[:i]) if g.targets), None)
            if previous is not None:
                group.targets, group.known = previous.targets, previous.known
                previous.targets, previous.known = [], []


def _drop_vague_bare_clauses(groups: list[_Group]) -> None:
    """A bare clause naming no known sound is a remark, not a target, when another clause gives
    explicit targets: "it's too noisy, remove the traffic"."""
    if not any(g.explicit and g.targets for g in groups):
        return
    for g in groups:
        if not g.explicit:
            kept = [(t, k) for t, k in zip(g.targets, g.known) if k]
            g.targets, g.known = [t for t, _ in kept], [k for _, k in kept]


def _combine(groups: list[_Group]) -> Task | None:
    """Rule 5 of the module docstring: which task wins when both have targets."""
    has = {t: [g for g in groups if g.task == t and g.targets] for t in TASKS}
    if not has[EXTRACT] or not has[REMOVE]:
        return EXTRACT if has[EXTRACT] else REMOVE if has[REMOVE] else None
    main = {t for t in TASKS if any(not g.exception for g in has[t])}
    if len(main) == 1:  # "remove the drums but not the bass", "the birds without the traffic"
        return main.pop()
    complements = {g.task for g in groups if g.complement}
    if complements == {EXTRACT}:
        return REMOVE  # "remove the drums, keep everything else and the piano"
    return EXTRACT  # "keep the piano, remove the rest"; otherwise the explicit keep wins


def parse_instruction(
    text: str,
    labels: Sequence[str] = (),
    *,
    encoder: TextEncoder | None = None,
    threshold: float = 0.6,
) -> Instruction:
    """Parse one request: `parse_instruction("remove the dog", ["dog barking"])`
    -> `Instruction(task="remove", targets=("dog barking",))`."""
    return RuleInstructionParser(labels, encoder, threshold).parse(text)
