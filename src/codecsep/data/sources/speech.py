"""Recorded speech from Debian packages, one real speaker id per voice, plus TTS train speakers.

Speakers: Fish Fillets NG's two fish per language (file names `<level>-m-*.ogg` = small fish,
`<level>-v-*.ogg` = big fish; each dubbing language has its own actors), Hedgewars voice packs,
Asterisk prompt voices (Allison Smith records both the English and the Spanish set, so they share
one speaker), 0 A.D. civilian voices per civilisation and gender, Trigger Rally co-drivers.
Splits are fixed per speaker below; TTS voices (espeak-ng, flite) are train only.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections import defaultdict
from pathlib import Path

from .base import Recording
from .debian import audio_files, ensure_tool, extract, package_license

PACKAGES = (
    "fillets-ng-data", "fillets-ng-data-cs", "fillets-ng-data-nl", "hedgewars-data",
    "asterisk-core-sounds-en-wav", "asterisk-core-sounds-es-wav", "asterisk-core-sounds-it-wav",
    "asterisk-prompt-it-menardi-wav", "0ad-data", "trigger-rally-data",
)

# speaker -> split for speakers not in train (everything else is train)
SPEAKER_SPLITS = {
    "fillets-nl-v": "test",
    "asterisk-it-carlo": "test", "asterisk-it-menardi": "test",
    "hedgewars-Mobster": "test", "hedgewars-Pirate": "test", "hedgewars-HillBilly": "test",
    "0ad-persian-male": "test", "0ad-persian-female": "test",
    "trigger-rally-paula": "test",
    "hedgewars-Surfer": "valid", "hedgewars-British": "valid",
    "0ad-napatan-female": "valid", "trigger-rally-tim": "valid",
}
MAX_PER_SPEAKER = 400  # keeps one speaker from dominating (and bounds build time)
MAX_PER_HELDOUT_SPEAKER = 200  # valid/test speakers: keeps speech near 70/10/20 by recordings
# telephony tones and beeps in the Asterisk sets are not speech
ASTERISK_NON_SPEECH = r"(beep|2tone|confbridge-(join|leave)|silence)"
# cries, grunts, laughs and coughs in the Hedgewars packs (sfx.py labels some of them)
HEDGEWARS_NON_SPEECH = r"^(ow\d|ouch|ooff\d|nooo|laugh|hmm|jump\d|firepunch\d|poison\w+)\.ogg$"

ASTERISK_SPEAKERS = {
    "asterisk-core-sounds-en-wav": "asterisk-allison",
    "asterisk-core-sounds-es-wav": "asterisk-allison",
    "asterisk-core-sounds-it-wav": "asterisk-it-carlo",
    "asterisk-prompt-it-menardi-wav": "asterisk-it-menardi",
}


def speaker_of(package: str, rel: str) -> str | None:
    """Speaker id of an unpacked package file, or None when the file is not speech we use."""
    name = rel.rsplit("/", 1)[-1]
    if package.startswith("fillets-ng-data"):
        m = re.search(r"/sound/[^/]+/(\w+)/[^/]+-([mv])-[^/]*\.ogg$", rel)
        return f"fillets-{m.group(1)}-{m.group(2)}" if m else None
    if package == "hedgewars-data":
        if re.search(HEDGEWARS_NON_SPEECH, name.lower()):
            return None
        m = re.search(r"/Sounds/voices/([^/]+)/", rel)
        return f"hedgewars-{m.group(1)}" if m else None
    if package in ASTERISK_SPEAKERS:
        if "/silence/" in rel or not name.endswith(".wav"):
            return None
        if re.search(ASTERISK_NON_SPEECH, name):
            return None
        return ASTERISK_SPEAKERS[package]
    if package == "0ad-data":
        m = re.search(r"/audio/voice/([^/]+)/civ/civ_(male|female)_", rel)
        return f"0ad-{m.group(1)}-{m.group(2)}" if m else None
    if package == "trigger-rally-data":
        m = re.search(r"/sounds/codriver/([^/]+)/", rel)
        return f"trigger-rally-{m.group(1)}" if m else None
    return None


def collect(cache: Path, packages=PACKAGES) -> list[Recording]:
    """One Recording per speech file; speakers above their cap keep a hash-chosen subset."""
    by_speaker: dict[str, list[Recording]] = defaultdict(list)
    for package in packages:
        root = extract(package, cache)
        lic = package_license(package, root)
        for path in audio_files(root):
            rel = str(path.relative_to(root))
            speaker = speaker_of(package, "/" + rel)
            if speaker is None:
                continue
            by_speaker[speaker].append(voice(path, rel, speaker, package, lic,
                                             SPEAKER_SPLITS.get(speaker, "train")))
    return cap_per_speaker(
        by_speaker, lambda recs: MAX_PER_SPEAKER if recs[0].split == "train" else MAX_PER_HELDOUT_SPEAKER)


def voice(path: Path, rel: str, speaker: str, package: str, lic: str, split: str = "train") -> Recording:
    """One recording of `speaker` (the split group, so a speaker never spans two splits)."""
    return Recording(src=str(path), label="speech", category="speech", source=package,
                     source_id=f"{speaker}:{rel}", split_group=speaker, license=lic, split=split,
                     extra={"speaker": speaker})


def cap_per_speaker(by_speaker: dict[str, list[Recording]], cap_of, key=lambda r: r.source_id):
    """Every speaker's recordings, at most `cap_of(recs)` each: a subset chosen by the md5 of
    `key(recording)`, so builds are stable; in speaker, then source-id order."""
    recordings = []
    for _, recs in sorted(by_speaker.items()):
        chosen = sorted(recs, key=lambda r: hashlib.md5(key(r).encode()).hexdigest())[:cap_of(recs)]
        recordings += sorted(chosen, key=lambda r: r.source_id)
    return recordings


SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please leave your message after the tone.",
    "It is going to rain in the afternoon, so take an umbrella.",
    "The train to the city leaves at half past seven.",
    "I have never seen such a beautiful sunset over the sea.",
    "Could you tell me the way to the nearest library?",
    "She sells sea shells by the sea shore.",
    "Our meeting has been moved to Thursday morning.",
    "The children were playing football in the park.",
    "Turn left at the second traffic light and keep going.",
    "This recipe needs two eggs, flour, sugar and a little butter.",
    "We are sorry, all of our operators are busy right now.",
    "The museum opens at nine and closes at five.",
    "He forgot his keys on the kitchen table again.",
    "A cold wind was blowing from the mountains.",
    "Thank you for calling, how can I help you today?",
    "The concert was cancelled because of the storm.",
    "Remember to water the plants while I am away.",
    "Numbers one, two, three, four and five are on the list.",
    "The old bridge was rebuilt after the flood.",
    "Can you hear me clearly on the other end of the line?",
    "Every morning she runs three miles before breakfast.",
    "The captain ordered the crew to raise the sails.",
    "My favourite season is autumn, when the leaves turn red.",
]

ESPEAK_VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbclan"]
ESPEAK_VARIANTS = ["m1", "f2", "m3", "f4"]
FLITE_VOICES = ["slt", "awb", "rms", "kal16"]


def tts_voices() -> list[tuple[str, str]]:
    voices = [("espeak-ng", f"{v}+{var}") for v, var in zip(
        ESPEAK_VOICES * 2, ESPEAK_VARIANTS * 3)]
    return voices + [("flite", v) for v in FLITE_VOICES]


def synthesize(engine: str, voice: str, text: str, wav: Path) -> None:
    tmp = wav.with_suffix(".tmp.wav")
    if engine == "espeak-ng":
        cmd = ["espeak-ng", "-v", voice, "-s", "150", "-w", str(tmp), text]
    else:
        cmd = ["flite", "-voice", voice, "-t", text, "-o", str(tmp)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp.replace(wav)


def collect_tts(cache: Path, per_voice: int = 12) -> list[Recording]:
    """Synthesize `per_voice` sentences per TTS voice (train only); cached on disk."""
    ensure_tool("espeak-ng")
    ensure_tool("flite")
    recordings = []
    for v, (engine, voice) in enumerate(tts_voices()):
        out = Path(cache) / "tts" / f"{engine}_{voice.replace('+', '_')}"
        out.mkdir(parents=True, exist_ok=True)
        for k in range(per_voice):
            text = SENTENCES[(v * 5 + k) % len(SENTENCES)]
            wav = out / f"{k:03d}.wav"
            if not wav.exists():
                synthesize(engine, voice, text, wav)
            speaker = f"tts-{engine}-{voice}"
            recordings.append(Recording(
                src=str(wav), label="speech", category="speech", source=engine,
                source_id=f"{speaker}:{k:03d}", split_group=speaker,
                license="GPL-3+" if engine == "espeak-ng" else "BSD-like (Flite license)",
                split="train", extra={"speaker": speaker, "tts": True, "text": text},
            ))
    return recordings
