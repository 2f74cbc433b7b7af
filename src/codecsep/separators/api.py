"""One-call separation from Python, and the helpers the CLI and the demo share.

    import codecsep
    out = codecsep.separate("street.wav", ["birdsong", "engine"])
    out["target"][0]     # (C, T) the birds, at out["sample_rate"]
    out["residual"][1]   # (C, T) everything but the engine

Outputs are at the separator's rate (16 kHz for the shipped model), whatever the input's rate:
the model never sees more bandwidth than that, so resampling back would add nothing.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from pathlib import Path

import torch

from ..audio import level_db, load_audio, resample, to_mono
from ..errors import CodecSepError
from .base import TextQueriedSeparator, as_channels, check_prompts
from .registry import load_separator
from .separator import DEFAULT_SEPARATOR

MAX_SLUG = 60


def slug(prompt: str) -> str:
    """File-name stem for a prompt: "Dog barking!" -> "dog_barking" (unicode letters kept)."""
    s = re.sub(r"\W+", "_", prompt.strip().lower()).strip("_")[:MAX_SLUG].strip("_")
    return s or "prompt"


@functools.lru_cache(maxsize=2)
def _load_cached(path: str | None) -> TextQueriedSeparator:
    return load_separator(path)


def get_separator(model: TextQueriedSeparator | str | os.PathLike | None = None,
                  ) -> TextQueriedSeparator:
    """A separator as given, loaded from a checkpoint dir (any text-queried kind: CodecSep,
    hierarchical, ResUNet), or the shipped default (None).

    Loaded models are cached, so repeated `separate()` calls do not reload them.
    """
    if isinstance(model, TextQueriedSeparator):
        return model
    if model is None and not (DEFAULT_SEPARATOR / "config.json").is_file():
        raise CodecSepError(f"no default separator is installed ({DEFAULT_SEPARATOR} is missing): "
                            "give a checkpoint folder (--model DIR / model=DIR)")
    return _load_cached(str(Path(model).resolve()) if model is not None else None)


def trained_sounds(model: TextQueriedSeparator | str | os.PathLike | None = None) -> list[str]:
    """The sounds a separator was trained on (the default: the shipped one), as corpus labels:
    the prompts it knows best. Other prompts are pulled toward the nearest of them when the
    checkpoint anchors its prompts. [] if the checkpoint carries no training captions."""
    return get_separator(model).anchors.labels()


def prompt_notes(sep: TextQueriedSeparator, prompts, query_cond: torch.Tensor | None = None) -> list[str]:
    """What a user should know before separating: for each text prompt that is not one of the
    separator's training captions or aliases, the nearest trained sound (and whether the prompt is
    far from all of them); for audio examples (`query_cond`, their conditioning), the trained sound
    they steer toward. [] for a checkpoint that carries no training captions."""
    from ..text.anchors import FAR_SIMILARITY

    anchors = sep.anchors
    if not anchors.texts:
        return []
    known = {t.lower() for t in anchors.texts} | {n.lower() for g in anchors.aliases for n in g.names}
    n = len(anchors.labels())
    if query_cond is not None:
        return [f"example {p!r} steers toward {label!r} of the {n} trained sounds (similarity {sim:.2f})"
                for p, (label, sim) in zip(prompts, sep.nearest_sounds(emb=query_cond))]
    notes = []
    for p, (label, sim) in zip(prompts, sep.nearest_sounds(prompts)):
        if " ".join(p.lower().split()) in known:
            continue
        if sim < FAR_SIMILARITY:
            notes.append(f"{p!r} is far from all {n} trained sounds (nearest {label!r}, similarity "
                         f"{sim:.2f}): expect a poor separation (`codecsep sounds` lists them)")
        else:
            notes.append(f"{p!r} is not one of the {n} trained sounds; nearest: {label!r} "
                         f"(similarity {sim:.2f})")
    return notes


def read_input(path, sep: TextQueriedSeparator, mono: bool = False) -> tuple[torch.Tensor, int]:
    """Audio file -> ((C, T) at the separator's rate, the file's own rate)."""
    wav, file_rate = load_audio(path, mono=mono)
    return resample(wav, file_rate, sep.sample_rate), file_rate


def _as_waveform(audio, sep: TextQueriedSeparator, sample_rate: int | None) -> torch.Tensor:
    """An array at `sample_rate` (as `as_channels` takes it) -> (C, T) float32 at the separator's
    rate."""
    return resample(as_channels(audio), int(sample_rate or sep.sample_rate), sep.sample_rate)


SILENT_DBFS = -90.0  # an input whose RMS is below this is called silent
SHORT_SECONDS = 0.1  # ... and one shorter than this very short (the masker sees 5 frames)
QUIET_TARGET_DB = -25.0  # a target this far below its input: nothing much was found


def input_warnings(wav: torch.Tensor, sample_rate: int) -> list[str]:
    """What a user should know about an input before trusting its outputs (wav: (C, T))."""
    notes = []
    rms_db = level_db(wav)
    if rms_db < SILENT_DBFS:
        notes.append(f"the input is silent (RMS {max(rms_db, -300):.0f} dBFS): every output is silence")
    if wav.shape[-1] < SHORT_SECONDS * sample_rate:
        notes.append(f"the input is only {1000 * wav.shape[-1] / sample_rate:.0f} ms long: "
                     "too short for the prompt to be told apart from the rest")
    return notes


def quiet_targets(wav: torch.Tensor, targets: torch.Tensor, prompts) -> list[tuple[str, str]]:
    """Prompts whose target came out far below the input (wav (C, T), targets (P, C, T)): the
    sound may be absent, or the masker did not recognise it (`scripts/absent_prompts.py`: on
    VALID, 26% of absent prompts and 2% of present ones come out below -25 dB)."""
    level = level_db(wav)
    out = []
    for prompt, target in zip(prompts, targets):
        rel = level_db(target) - level
        if rel < QUIET_TARGET_DB:
            out.append((prompt, f"the target is {-rel:.0f} dB below the input: the sound may be "
                                "absent, or not recognised (another wording may find it)"))
    return out


@functools.lru_cache(maxsize=1)
def installed_presence_check():
    """The presence check installed with the package (`separators.presence`), or None."""
    from .presence import PresenceCheck

    return PresenceCheck.load()


def presence(sep: TextQueriedSeparator, wav: torch.Tensor, out: dict, prompts,
             check=None) -> dict | None:
    """{"probability": P(the prompted sound is in the input) per prompt, "absent": flagged or
    not}, from `check` or the installed presence check; None without one, or when the input
    itself is silent or very short (its warnings say more)."""
    check = check or installed_presence_check()
    if check is None or input_warnings(wav, sep.sample_rate):
        return None
    p = check.probabilities(sep, wav, out["target"], out["residual"], prompts)
    return {"probability": p, "absent": [v < check.detector.threshold for v in p]}


def separation_notes(wav: torch.Tensor, targets: torch.Tensor, prompts, sample_rate: int,
                     found: dict | None = None) -> list[str]:
    """What to tell the user about one separation: the input's problems if it has any, else the
    prompts the presence check flagged (`found`: `presence()`'s dict) and those whose target came
    out near-silent."""
    notes = input_warnings(wav, sample_rate)
    if notes:
        return notes
    flagged = {p: v for p, v, a in zip(prompts, found["probability"], found["absent"])
               if a} if found else {}
    notes = [f"{p!r}: the sound may not be in the input (P(present) {v:.2f}): what came out is "
             "the nearest thing the separator found" for p, v in flagged.items()]
    return notes + [f"{p!r}: {n}" for p, n in quiet_targets(wav, targets, prompts) if p not in flagged]


def check_separation(sep: TextQueriedSeparator, wav: torch.Tensor, out: dict, prompts,
                     check_presence: bool = True) -> tuple[dict | None, list[str]]:
    """After one separation: (the presence check's dict or None, the notes for the user), as
    `separate`, `codecsep separate` and the web app report them. `check_presence` False (audio
    queries, or the user's choice) skips the check; the input and quiet-target notes remain."""
    found = presence(sep, wav, out, prompts) if check_presence else None
    return found, separation_notes(wav, out["target"], prompts, sep.sample_rate, found)


def query_embeddings(sep: TextQueriedSeparator, examples, audio_encoder=None,
                     anchor_weight: float | None = None) -> torch.Tensor:
    """(P, E) conditioning for audio examples (files): their audio-encoder embeddings, in the
    separator's text space, pulled toward its training captions with `anchor_weight` (default
    `AUDIO_QUERY_WEIGHT`; 0 takes them as embedded)."""
    from ..text.anchors import AUDIO_QUERY_WEIGHT
    from ..text.audio_encoder import AudioEncoder, check_query_space

    weight = AUDIO_QUERY_WEIGHT if anchor_weight is None else anchor_weight
    if not 0.0 <= weight <= 1.0:
        raise CodecSepError(f"the query anchor weight must be from 0 to 1, got {weight:g}")
    encoder = AudioEncoder.load(audio_encoder)
    check_query_space(encoder, sep)
    emb = torch.stack([encoder.embed(*load_audio(q, mono=True)) for q in examples])
    return sep.anchor_queries(emb, weight)


def separate(path_or_array, prompts=None, model=None, sample_rate: int | None = None,
             mono: bool = False, query_audio=None, audio_encoder=None,
             query_anchor_weight: float | None = None, presence_check: bool = True) -> dict:
    """Separate an audio file or array by text prompts (or audio examples), in one batched pass.

    path_or_array: a file path, or a (T,), (C, T) or (T, C) float array or tensor at
        `sample_rate` (default: the separator's rate; `as_channels` reads the layout).
        `sample_rate` is only for arrays: a file says its own.
    prompts: one string or a list; one output row per prompt.
    model: a separator (CodecSep, hierarchical, ResUNet), a checkpoint directory of one, or None
        for the shipped default.
    mono: downmix the channels first (default: each channel is separated on its own).
    query_audio: audio files to use as examples instead of prompts (one output row each, named
        after the file); `audio_encoder` (default: the shipped one) embeds them and
        `query_anchor_weight` pulls them toward the training captions (`query_embeddings`).
    presence_check: run the installed presence check on text prompts (it warns about prompts
        whose sound seems absent and never changes the outputs); False skips it.
    Returns {"target": (P, C, T), "residual": (P, C, T), "sample_rate": int, "prompts": list,
    "presence": `presence()`'s dict or None}; "residual" is the mixture minus the target: use it
    to *remove* the prompted sound.
    """
    if query_audio is not None:
        if prompts is not None:
            raise CodecSepError("give prompts or query_audio examples, not both")
        query_audio = [query_audio] if isinstance(query_audio, (str, os.PathLike)) else query_audio
        prompts = [Path(q).stem for q in query_audio]
    elif prompts is None:
        raise CodecSepError("give prompts (text) or query_audio (example files)")
    prompts = check_prompts(prompts)
    sep = get_separator(model)
    cond = query_embeddings(sep, query_audio, audio_encoder, query_anchor_weight) if query_audio else None
    if isinstance(path_or_array, (str, os.PathLike)):
        if sample_rate is not None:
            raise CodecSepError("sample_rate is for arrays; an audio file carries its own rate")
        wav, _ = read_input(path_or_array, sep, mono=mono)
    else:
        wav = _as_waveform(path_or_array, sep, sample_rate)
        wav = to_mono(wav) if mono else wav
    out = sep.separate(wav, prompts, cond=cond)
    found, notes = check_separation(sep, wav, out, prompts, cond is None and presence_check)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return {**out, "sample_rate": sep.sample_rate, "prompts": prompts, "presence": found}
