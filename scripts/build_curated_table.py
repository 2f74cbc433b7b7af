"""Rebuild src/codecsep/data/sources/curated.tsv from the survey's proposals and the review below.

The survey (2026-11-22, results/corpus/survey-2026-11-22/: packages-*.md say how each package was read,
proposals-*.tsv list every proposed file with its reason) proposed files by name, credits and spectrograms;
REJECT holds the review's refusals. Usage: python scripts/build_curated_table.py
"""
import csv, sys
from pathlib import Path
REJECT = {  # (substring of path) -> why
    "metal_hit.wav": "a metal hit is not a sword clash",
    "helicopter": "a helicopter is not an airplane",
    "traffic/resource/car.wav": "0.5 s toy-car sound",
    "Toyland": "cartoon (Toyland) sound",
    "misc/gull": "seagull calls, not song",
    "wav/shoot/large": "cannon", "wav/shoot/medium": "cannon", "wav/shoot/small": "cannon", "wav/shoot/xlarge": "cannon",
    "tankmove": "engine and tracks together",
    "footsteps/mech": "robot steps",
    "footsteps/splash": "steps in water (water splash class too)",
    "water_footstep": "steps in water (water splash class too)",
    "world/waterfall.wav": "plain noise",
    "engine_large": "three sounds mixed",
    "gnu_flute": "not checked by ear",
    "voice/argh": "heavily processed voice", "voice/haha": "heavily processed voice",
    "player/death": "processed voice (Red Eclipse)", "player/pain": "processed voice (Red Eclipse)",
    "ambience/river.ogg": "bird song over the water",
    "ambience/waterfall_": "near-copies of waterfall / waterfall2 / waterfall3",
    "sfx/ugh.ogg": "a grunt, not a scream",
    "BlastLiquid": "a liquid burst, not a blast", "Liquids.ocg/Swim": "swimming, not a splash",
    "sounds/owl.ogg": "an owl call, not song", "sounds/hawk.ogg": "a hawk cry, not song",
    "firearrowhit": "arrow hit with burning", "bull_ack": "a bull's snort, not a moo",
    "units/elephant/sounds/ele": "a rumble, not the trumpeting the class is",
}
rows = []
ROOT = Path(__file__).resolve().parents[1]
for tsv in sorted((ROOT / "results/corpus/survey-2026-11-22").glob("proposals-*.tsv")):
    for r in csv.DictReader(open(tsv), delimiter="\t"):
        if r["label"] == "speech":
            continue
        why = next((w for k, w in REJECT.items() if k in r["path_in_package"]), None)
        if why:
            print("reject", r["package"], r["path_in_package"], r["label"], "--", why, file=sys.stderr)
            continue
        if "dup-of-surveyed" in r.get("note", ""):
            continue
        rows.append((r["package"], r["path_in_package"], r["label"], r["confidence"]))
out = ROOT / "src/codecsep/data/sources/curated.tsv"
with open(out, "w") as f:
    f.write("# Train-only recordings named by an explicit table (reviewed survey of 2026-11-22: file and\n"
            "# directory names, the packages' data and credit files, spectrograms where the name was unclear).\n"
            "# package\tpath after unpacking (ARCHIVE::member inside .zip/.pk3/.rcc/.cat)\tlabel\tconfidence\n")
    for row in sorted(set(rows)):
        f.write("\t".join(row) + "\n")
print(len(rows), "rows", file=sys.stderr)
