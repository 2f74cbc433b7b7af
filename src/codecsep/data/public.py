"""Loaders for public datasets already on disk, in their official layouts, as manifest `Clip`s.

Nothing is downloaded. Every loader takes the dataset's root folder, fails with a message that
names the missing path, and returns clips with absolute paths, so `write_manifest` can store
them anywhere. Datasets without class labels (AudioCaps, Clotho) use the first caption as the
label; all captions stay in `captions`.

- esc50: meta/esc50.csv + audio/*.wav; fold 4 -> valid, fold 5 -> test.
- audiocaps: {train,val,test}.csv + audio named by youtube_id or audiocap_id.
- clotho: clotho_captions_{development,validation,evaluation}.csv + clotho_audio_<split>/.
- music: AudioSep's music_eval.csv + segment-/mixture-<idx>.wav, or solo/<instrument>/<video>.wav.
- librimix: wav{8,16}k/{min,max}/{train-100,train-360,dev,test}/{mix_clean,s1,s2}/*.wav.
- dnr: {tr,cv,tt}/<id>/{mix,speech,music,sfx}.wav (+ annots.csv).

Fixed evaluation mixtures (LibriMix, AudioSep's MUSIC set, DnR) are read with
`read_fixed_mixtures(name, root)`.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from codecsep.data.manifest import Clip
from codecsep.errors import CodecSepError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


class DatasetLayoutError(CodecSepError, FileNotFoundError):
    """A dataset root or one of its required files is missing; the message names the path."""


@dataclass(frozen=True)
class FixedMixture:
    """A mixture shipped by a dataset, with its reference sources (paths are absolute)."""

    mixture_id: str
    mixture_path: str
    source_paths: tuple[str, ...]
    labels: tuple[str, ...]  # one per source, also the default prompts
    dataset: str
    split: str
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- helpers


def _root(root, dataset: str) -> Path:
    root = Path(root).absolute()
    if not root.is_dir():
        raise DatasetLayoutError(f"{dataset}: dataset root {root} does not exist")
    return root


def _require(path: Path, dataset: str, hint: str = "") -> Path:
    if not path.exists():
        raise DatasetLayoutError(f"{dataset}: missing {path}" + (f" ({hint})" if hint else ""))
    return path


def _read_csv(path: Path, dataset: str, required: Iterable[str]) -> list[dict]:
    _require(path, dataset)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = set(required) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{dataset}: {path} lacks columns {sorted(missing)}")
        return list(reader)


def _probe(path: Path) -> tuple[int, float]:
    """(sample rate, duration in seconds) from the file header."""
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as e:
        raise ValueError(f"cannot read audio header of {path}: {e}") from e
    return int(info.samplerate), info.frames / info.samplerate


def _clip(path: Path, label: str, dataset: str, source_id: str, split: str, **kw) -> Clip:
    sr, duration = _probe(path)
    kw.setdefault("captions", (label,))
    return Clip(path=str(path), label=label, source=dataset, source_id=source_id, split=split,
                duration=duration, sample_rate=sr, orig_sample_rate=sr,
                license=LICENSES.get(dataset, "unknown"), **kw)


def _index_audio(dirs: Iterable[Path]) -> dict[str, Path]:
    """File stem -> path over the audio files directly inside `dirs` (first dir wins)."""
    index: dict[str, Path] = {}
    for d in dirs:
        if d.is_dir():
            for p in sorted(d.iterdir()):
                if p.suffix.lower() in AUDIO_SUFFIXES:
                    index.setdefault(p.stem, p)
    return index


def _humanise(name: str) -> str:
    return name.replace("_", " ").strip()


LICENSES = {"esc50": "CC BY-NC 3.0", "librimix": "CC BY 4.0 (LibriSpeech)"}


# ----------------------------------------------------------------------------- ESC-50


def load_esc50(root, *, valid_folds: Iterable[int] = (4,), test_folds: Iterable[int] = (5,)):
    """ESC-50: label = category with "_" -> " "; source_id = src_file (takes stay together)."""
    root = _root(root, "esc50")
    valid, test = set(valid_folds), set(test_folds)
    rows = _read_csv(root / "meta" / "esc50.csv", "esc50",
                     ("filename", "fold", "target", "category", "src_file"))
    clips = []
    for row in rows:
        fold = int(row["fold"])
        split = "test" if fold in test else "valid" if fold in valid else "train"
        label = _humanise(row["category"])
        extra = {"fold": fold, "target": int(row["target"]), "take": row.get("take", ""),
                 "esc10": row.get("esc10", "").strip().lower() == "true"}
        path = _require(root / "audio" / row["filename"], "esc50")
        clips.append(_clip(path, label, "esc50", row["src_file"], split, extra=extra))
    return clips


# ----------------------------------------------------------------------------- AudioCaps

AUDIOCAPS_SPLITS = {"train": "train", "val": "valid", "test": "test"}


def _audiocaps_csv(root: Path, name: str) -> Path | None:
    for d in (root, root / "dataset", root / "metadata", root / "data"):
        if (d / f"{name}.csv").is_file():
            return d / f"{name}.csv"
    return None


def _audiocaps_keys(row: dict) -> list[str]:
    ytid, start = row["youtube_id"], row["start_time"]
    return [ytid, f"Y{ytid}", row["audiocap_id"], f"{ytid}_{start}", f"Y{ytid}_{start}"]


def load_audiocaps(root, *, strict: bool = False):
    """AudioCaps: audio named by youtube_id (optionally "Y"-prefixed or "_<start>"-suffixed) or
    by audiocap_id, in audio/<split>/, <split>/, audio/ or the root.

    Rows sharing one audio file become one clip with all their captions. Rows without audio
    (YouTube videos that could not be fetched) are skipped with a warning unless `strict`.
    """
    root = _root(root, "audiocaps")
    found = {name: _audiocaps_csv(root, name) for name in AUDIOCAPS_SPLITS}
    if not any(found.values()):
        raise DatasetLayoutError(f"audiocaps: no train.csv, val.csv or test.csv in {root}")
    clips = []
    for name, csv_path in found.items():
        if csv_path is not None:
            clips += _audiocaps_split(root, name, csv_path, strict)
    if not clips:
        raise DatasetLayoutError(f"audiocaps: no audio files found for any CSV row under {root}")
    return clips


def _audiocaps_split(root: Path, name: str, csv_path: Path, strict: bool) -> list[Clip]:
    rows = _read_csv(csv_path, "audiocaps", ("audiocap_id", "youtube_id", "start_time", "caption"))
    index = _index_audio([root / "audio" / name, root / name, root / "audio", root])
    grouped: dict[Path, list[dict]] = {}
    missing = []
    for row in rows:
        path = next((index[k] for k in _audiocaps_keys(row) if k in index), None)
        if path is None:
            missing.append(row["youtube_id"])
            continue
        grouped.setdefault(path, []).append(row)
    if missing and strict:
        raise DatasetLayoutError(f"audiocaps: no audio for youtube_id {missing[0]} ({csv_path})")
    if missing:
        warnings.warn(f"audiocaps: {len(missing)} of {len(rows)} rows in {csv_path.name} "
                      "have no audio file; skipped", stacklevel=3)
    return [_audiocaps_clip(path, group, AUDIOCAPS_SPLITS[name]) for path, group in grouped.items()]


def _audiocaps_clip(path: Path, rows: list[dict], split: str) -> Clip:
    rows = sorted(rows, key=lambda r: int(r["audiocap_id"]))
    captions = tuple(dict.fromkeys(r["caption"].strip() for r in rows))
    extra = {"youtube_id": rows[0]["youtube_id"], "start_time": float(rows[0]["start_time"]),
             "audiocap_ids": [int(r["audiocap_id"]) for r in rows]}
    return _clip(path, captions[0], "audiocaps", rows[0]["youtube_id"], split,
                 captions=captions, extra=extra)


# ----------------------------------------------------------------------------- Clotho

CLOTHO_SPLITS = {"development": "train", "validation": "valid", "evaluation": "test"}


def load_clotho(root):
    """Clotho: clotho_captions_<split>.csv (file_name, caption_1..caption_5) and audio in
    clotho_audio_<split>/. Splits that are absent are skipped; none at all is an error."""
    root = _root(root, "clotho")
    present = {s for s in CLOTHO_SPLITS if (root / f"clotho_captions_{s}.csv").is_file()}
    if not present:
        raise DatasetLayoutError(
            f"clotho: missing {root / 'clotho_captions_development.csv'} "
            "(and the validation/evaluation CSVs)"
        )
    clips = []
    for name in sorted(present, key=list(CLOTHO_SPLITS).index):
        rows = _read_csv(root / f"clotho_captions_{name}.csv", "clotho", ("file_name", "caption_1"))
        audio_dir = _require(root / f"clotho_audio_{name}", "clotho")
        for row in rows:
            captions = tuple(
                row[k].strip() for k in sorted(row) if k.startswith("caption_") and row[k].strip()
            )
            path = _require(audio_dir / row["file_name"], "clotho")
            clips.append(_clip(path, captions[0], "clotho", row["file_name"],
                               CLOTHO_SPLITS[name], captions=captions))
    return clips


# ----------------------------------------------------------------------------- MUSIC

MUSIC_EVAL_LOCATIONS = (  # (metadata csv, audio dir), relative to the root: AudioSep's layout
    ("music_eval.csv", "."),
    ("metadata/music_eval.csv", "data/music"),
    ("evaluation/metadata/music_eval.csv", "evaluation/data/music"),
)


def _music_eval(root: Path) -> tuple[list[dict], Path] | None:
    for csv_name, audio in MUSIC_EVAL_LOCATIONS:
        if (root / csv_name).is_file():
            rows = _read_csv(root / csv_name, "music", ("idx", "caption", "src_wav", "noise_wav"))
            return rows, root / audio
    return None


def _video_id(wav_name: str) -> str:
    """AudioSep's "Y<youtube id>_<segment>.wav" -> "<youtube id>"."""
    stem = Path(wav_name).stem.rsplit("_", 1)[0]
    return stem[1:] if stem.startswith("Y") else stem


def load_music(root, *, split: str = "test"):
    """MUSIC: AudioSep's evaluation set (music_eval.csv: idx,caption,src_wav,noise_wav with
    segment-<idx>.wav targets; one clip per distinct src_wav), or a solo layout
    solo/<instrument>/<video_id>.wav (or solo/<instrument>/<video_id>/*.wav segments)."""
    root = _root(root, "music")
    evaluation = _music_eval(root)
    if evaluation is not None:
        return _music_eval_clips(*evaluation, split)
    if (root / "solo").is_dir():
        return _music_solo_clips(root / "solo", split)
    raise DatasetLayoutError(
        f"music: found neither {root / 'music_eval.csv'} (AudioSep evaluation layout, also "
        f"metadata/ or evaluation/metadata/) nor {root / 'solo'} (solo/<instrument>/<video>.wav)"
    )


def _music_eval_clips(rows: list[dict], audio_dir: Path, split: str) -> list[Clip]:
    clips, seen = [], set()
    for row in rows:
        if row["src_wav"] in seen:
            continue
        seen.add(row["src_wav"])
        path = _require(audio_dir / f"segment-{row['idx']}.wav", "music")
        extra = {"src_wav": row["src_wav"], "idx": int(row["idx"])}
        clips.append(_clip(path, row["caption"].strip(), "music", _video_id(row["src_wav"]),
                           split, category="music", extra=extra))
    return clips


def _music_solo_clips(solo: Path, split: str) -> list[Clip]:
    clips = []
    for instrument in sorted(p for p in solo.iterdir() if p.is_dir()):
        for path in sorted(instrument.rglob("*")):
            if path.suffix.lower() not in AUDIO_SUFFIXES:
                continue
            video = path.relative_to(instrument).parts[0]
            clips.append(_clip(path, _humanise(instrument.name), "music", Path(video).stem,
                               split, category="music"))
    if not clips:
        raise DatasetLayoutError(f"music: no audio files under {solo}/<instrument>/")
    return clips


def read_music_eval(root) -> list[FixedMixture]:
    """AudioSep's MUSIC evaluation mixtures: mixture-<idx>.wav with target segment-<idx>.wav."""
    root = _root(root, "music")
    evaluation = _music_eval(root)
    if evaluation is None:
        raise DatasetLayoutError(f"music: missing {root / 'music_eval.csv'}")
    rows, audio_dir = evaluation
    return [
        FixedMixture(
            mixture_id=f"music-{row['idx']}",
            mixture_path=str(_require(audio_dir / f"mixture-{row['idx']}.wav", "music")),
            source_paths=(str(_require(audio_dir / f"segment-{row['idx']}.wav", "music")),),
            labels=(row["caption"].strip(),), dataset="music", split="test",
            extra={"src_wav": row["src_wav"], "noise_wav": row["noise_wav"]},
        )
        for row in rows
    ]


# ----------------------------------------------------------------------------- LibriMix

LIBRIMIX_SPLITS = {"train-100": "train", "train-360": "train", "dev": "valid", "test": "test"}
LIBRIMIX_ROLES = ("mix_clean", "s1", "s2")


def _librimix_base(root: Path, sample_rate: int, mode: str) -> Path:
    return _require(root / f"wav{sample_rate // 1000}k" / mode, "librimix",
                    "expected Libri2Mix/wav{8,16}k/{min,max}/")


def _librimix_rows(root: Path, base: Path, subset: str) -> list[dict]:
    """Rows of mixture_<subset>_mix_clean.csv, or the mix_clean folder's files if it is absent."""
    name = f"mixture_{subset}_mix_clean.csv"
    for meta in (base / "metadata" / name, root / "metadata" / name):
        if meta.is_file():
            return _read_csv(meta, "librimix", ("mixture_ID",))
    mix_dir = _require(base / subset / "mix_clean", "librimix", f"and no metadata/{name}")
    return [{"mixture_ID": p.stem} for p in sorted(mix_dir.glob("*.wav"))]


def _librimix_paths(base: Path, subset: str, mixture_id: str) -> list[Path]:
    # paths in the CSV are absolute on the machine that generated the set: rebuild them
    return [
        _require(base / subset / role / f"{mixture_id}.wav", "librimix") for role in LIBRIMIX_ROLES
    ]


def _librimix_subsets(base: Path, subsets) -> list[str]:
    subsets = list(subsets) if subsets is not None else [
        s for s in LIBRIMIX_SPLITS if (base / s).is_dir()
    ]
    if not subsets:
        raise DatasetLayoutError(f"librimix: no {'/'.join(LIBRIMIX_SPLITS)} folder in {base}")
    unknown = set(subsets) - set(LIBRIMIX_SPLITS)
    if unknown:
        raise ValueError(f"librimix: unknown subsets {sorted(unknown)}")
    return subsets


def load_librimix(root, *, sample_rate: int = 16000, mode: str = "min", subsets=None):
    """Speech clips from Libri2Mix's s1/s2 files, one per LibriSpeech utterance.

    source_id = LibriSpeech speaker (from "speaker-chapter-utterance" in the mixture ID), so
    two-speaker mixtures never pair a speaker with themselves.
    """
    root = _root(root, "librimix")
    base = _librimix_base(root, sample_rate, mode)
    clips, seen = [], set()
    for subset in _librimix_subsets(base, subsets):
        for row in _librimix_rows(root, base, subset):
            _, *sources = _librimix_paths(base, subset, row["mixture_ID"])
            for utterance, path in zip(row["mixture_ID"].split("_"), sources):
                if utterance in seen:
                    continue
                seen.add(utterance)
                speaker, chapter, _ = utterance.split("-")
                extra = {"utterance": utterance, "chapter": chapter,
                         "mixture_id": row["mixture_ID"]}
                clips.append(_clip(path, "speech", "librimix", speaker, LIBRIMIX_SPLITS[subset],
                                   category="speech", extra=extra))
    return clips


def read_librimix_mixtures(root, subset: str = "test", *, sample_rate: int = 16000,
                           mode: str = "min") -> list[FixedMixture]:
    """Libri2Mix's fixed mix_clean mixtures with their two references s1, s2."""
    root = _root(root, "librimix")
    base = _librimix_base(root, sample_rate, mode)
    (subset,) = _librimix_subsets(base, [subset])
    mixtures = []
    for row in _librimix_rows(root, base, subset):
        mix, *sources = _librimix_paths(base, subset, row["mixture_ID"])
        speakers = [u.split("-")[0] for u in row["mixture_ID"].split("_")]
        mixtures.append(FixedMixture(row["mixture_ID"], str(mix), tuple(map(str, sources)),
                                     ("speech", "speech"), "librimix", LIBRIMIX_SPLITS[subset],
                                     {"speakers": speakers}))
    return mixtures


# ----------------------------------------------------------------------------- DnR v2

DNR_SPLITS = {"tr": "train", "cv": "valid", "tt": "test"}
DNR_STEMS = {"speech": "speech", "music": "music", "sfx": "sound effects"}  # file -> label


def _dnr_split_dirs(root: Path, splits) -> list[str]:
    present = [s for s in (splits or DNR_SPLITS) if (root / s).is_dir()]
    if not present:
        raise DatasetLayoutError(f"dnr: missing {root / 'tr'} (and cv/, tt/)")
    return present


def _dnr_tags(annots: Path) -> list[str]:
    """First FSD50K tag of every effect event in annots.csv ("Bark,Dog,Animal" -> "bark")."""
    if not annots.is_file():
        return []
    with open(annots, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    tags = [
        _humanise(r["annotation"].split(",")[0]).lower()
        for r in rows
        if r.get("class") in ("sfx", "background") and r.get("annotation")
    ]
    return list(dict.fromkeys(tags))


def _dnr_folders(root: Path, split: str) -> list[Path]:
    return sorted(p for p in (root / split).iterdir() if p.is_dir())


def load_dnr(root, *, splits=None):
    """DnR v2 stems as clips: category = stem (speech, music, sfx); label "speech", "music",
    "sound effects"; source_id = "<split>/<mixture id>". Effect tags from annots.csv, when
    present, go to extra["tags"] and into a second caption."""
    root = _root(root, "dnr")
    clips = []
    for split in _dnr_split_dirs(root, splits):
        for folder in _dnr_folders(root, split):
            tags = _dnr_tags(folder / "annots.csv")
            for stem, label in DNR_STEMS.items():
                path = _require(folder / f"{stem}.wav", "dnr")
                captions = (label, ", ".join(tags)) if stem == "sfx" and tags else (label,)
                extra = {"mixture_id": folder.name, "tags": tags} if stem == "sfx" else {}
                clips.append(_clip(path, label, "dnr", f"{split}/{folder.name}", DNR_SPLITS[split],
                                   captions=captions, category=stem, extra=extra))
    return clips


def read_dnr_mixtures(root, split: str = "tt") -> list[FixedMixture]:
    """DnR v2's fixed mixtures: mix.wav with references speech, music, sfx (in that order)."""
    root = _root(root, "dnr")
    (split,) = _dnr_split_dirs(root, [split])
    return [
        FixedMixture(f"{split}/{folder.name}", str(_require(folder / "mix.wav", "dnr")),
                     tuple(str(_require(folder / f"{s}.wav", "dnr")) for s in DNR_STEMS),
                     tuple(DNR_STEMS.values()), "dnr", DNR_SPLITS[split])
        for folder in _dnr_folders(root, split)
    ]


# ----------------------------------------------------------------------------- registries

LOADERS: dict[str, Callable[..., list[Clip]]] = {
    "esc50": load_esc50,
    "audiocaps": load_audiocaps,
    "clotho": load_clotho,
    "music": load_music,
    "librimix": load_librimix,
    "dnr": load_dnr,
}

FIXED_MIXTURE_READERS: dict[str, Callable[..., list[FixedMixture]]] = {
    "music": read_music_eval,
    "librimix": read_librimix_mixtures,
    "dnr": read_dnr_mixtures,
}


def _lookup(registry: dict, name: str, what: str):
    try:
        return registry[name]
    except KeyError:
        raise ValueError(f"unknown {what} {name!r}; choose from {sorted(registry)}") from None


def load_public(name: str, root: str | os.PathLike, **options) -> list[Clip]:
    """Clips of public dataset `name` at `root`; options go to that dataset's loader."""
    return _lookup(LOADERS, name, "dataset")(root, **options)


def read_fixed_mixtures(name: str, root: str | os.PathLike, **options) -> list[FixedMixture]:
    """A dataset's own evaluation mixtures (librimix, music, dnr)."""
    return _lookup(FIXED_MIXTURE_READERS, name, "fixed-mixture dataset")(root, **options)


__all__ = [
    "DatasetLayoutError", "FixedMixture", "LOADERS", "FIXED_MIXTURE_READERS", "load_public",
    "read_fixed_mixtures", "load_esc50", "load_audiocaps", "load_clotho", "load_music",
    "load_librimix", "load_dnr", "read_music_eval", "read_librimix_mixtures", "read_dnr_mixtures",
]
