"""Rebuild src/codecsep/data/sources/curated.tsv from the survey's proposals and the review below.

The surveys (results/corpus/survey-*/: packages-*.md say how each package was read, proposals-*.tsv list
every proposed file with its reason) proposed files by name, credits and spectrograms; REJECT holds the
review's refusals. Usage: python scripts/build_curated_table.py
"""
import csv, sys
from pathlib import Path
REJECT = {  # (substring of path) -> why
    "metal_hit.wav": "a metal hit is not a sword clash",
    "helicopter": "a helicopter is not an airplane",
    "traffic/resource/car.wav": "0.5 s toy-car sound",
    "Toyland": "cartoon (Toyland) sound",
    "vo_teefault": "a pitched-up cartoon voice, not a scream",
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
    # session 7 (survey-2026-11-22-s7)
    "chainsaw/idle": "a chainsaw is not a vehicle engine",
    "player/lava.wav": "a lava sizzle, not a fire (unconfirmed)", "fireball_fly": "a weapon loop, not a fire (unconfirmed)",
    "ambient/water.ogg": "dripping, not flowing water", "pipewater_loop": "water in a pipe",
    "carni-lycan": "a creature model's voice", "cube2/packages/sounds/0ad/": "copies of 0 A.D. sounds (0ad-data also feeds valid/test)",
    "with_horse_in_background": "two sounds mixed", "with_strafing": "two sounds mixed",
    "infantry_being_shot_at": "battle ambience", "with_background_fighting": "battle ambience",
    "falling_bomb_with_explosion": "two sounds in sequence", "rockets_launched_then_explosion": "two sounds in sequence",
    "splash_and_waves": "waves too", "eerie_fantasy_horn": "a drone, not a horn signal",
    "typewriter": "a typewriter is not a computer keyboard", "type_writer": "a typewriter is not a computer keyboard",
    "hawk_": "a hawk cry, not song", "::SPY_DIE": "a comic cry", "sad_trumpet": "a sound-effect phrase (trumpet or trombone)",
}
# Packages whose proposals are not used (yet): their audio needs a reader the corpus builder does not have.
NOT_READ = {
    "freedoom": "Doom WAD lumps, 8-bit (reader not written yet)",
    "xmoto-data": "XBI3 pack (reader not written yet); one medium impact",
    "freecol": "two medium files, not worth a 142 MB download",
}
rows = []
ROOT = Path(__file__).resolve().parents[1]
for tsv in sorted((ROOT / "results/corpus").glob("survey-*/proposals-*.tsv")):
    for r in csv.DictReader(open(tsv), delimiter="\t"):
        if r["label"] == "speech" or r["package"] in NOT_READ:
            continue
        why = next((w for k, w in REJECT.items() if k in r["path_in_package"]), None)
        if why:
            print("reject", r["package"], r["path_in_package"], r["label"], "--", why, file=sys.stderr)
            continue
        if "dup-of-surveyed" in r.get("note", "") or "same md5 as another helper proposal" in r.get("note", ""):
            continue
        path = r["path_in_package"]
        if ".RES::" in path and not path.lower().endswith(".wav"):  # archives.read_res names members NAME.wav
            path += ".wav"
        rows.append((r["package"], path, r["label"], r["confidence"]))
out = ROOT / "src/codecsep/data/sources/curated.tsv"
with open(out, "w") as f:
    f.write("# Train-only recordings named by an explicit table (reviewed surveys, results/corpus/survey-*: file and\n"
            "# directory names, the packages' data and credit files, spectrograms where the name was unclear).\n"
            "# package\tpath after unpacking (ARCHIVE::member inside .zip/.pk3/.rcc/.cat)\tlabel\tconfidence\n")
    for row in sorted(set(rows)):
        f.write("\t".join(row) + "\n")
print(len(rows), "rows", file=sys.stderr)
