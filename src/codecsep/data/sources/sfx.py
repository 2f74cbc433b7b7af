"""Sound effects from game/data packages, labelled by keyword rules on their paths.

The rules are ours (the survey's labels were a starting map, about 85% plausible): each rule is
(label, package pattern, include pattern, exclude pattern) on the lower-cased path inside the
unpacked package; the first rule that matches wins; files that match no rule are not used.
Exclusions remove known traps: voiced lines named after actions ("fire!" in Warmux voices),
music loops, UI beeps, animals under a human-death folder and so on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .base import Recording
from .debian import audio_files, extract, package_license

PACKAGES = (
    "0ad-data", "wesnoth-1.16-data", "widelands-data", "warmux-data", "lincity-ng-data",
    "warzone2100-data", "bucklespring-data", "freeciv-data", "freedink-data", "freeorion-data",
    "netpanzer-data", "gamine-data", "heroes-sound-effects", "tuxmath-data", "tuxtype-data",
    "bzflag-data", "hedgewars-data", "fillets-ng-data", "frozen-bubble-data", "pingus-data",
    "trigger-rally-data",
)

ANY = ".*"
HUMANOID = r"(human|orc|goblin|troll|ogre|elf|dwarf|naga|mermaid|mermen|male|female|drake|saurian)"


@dataclass(frozen=True)
class Rule:
    label: str
    package: str  # regex on the package name
    include: str  # regex searched in the lower-cased path
    exclude: str = r"$^"  # regex that vetoes a match

    def matches(self, package: str, path: str) -> bool:
        return (re.search(self.package, package) is not None
                and re.search(self.include, path) is not None
                and re.search(self.exclude, path) is None)


RULES: list[Rule] = [
    # Hedgewars voice packs: cries and laughs are not speech (speech.py skips them)
    Rule("scream", r"hedgewars", r"/voices/[^/]+/(ow\d|ouch|ooff\d|nooo)\.ogg$"),
    Rule("laughter", r"hedgewars", r"/voices/[^/]+/laugh\.ogg$"),
    # speech-like voice folders are never effects
    Rule("_skip", ANY, r"/voices?/|/codriver/|/taunts/|/cmndrvoc/|/missmesg/|/tutorial/"
                       r"|/vtoltalk/|/music/|/stdmusic/|/ui/|/interface/|/alarm/",
         r"/warmux/sound/default/voices/(injured|death)"),
    Rule("keyboard typing", r"bucklespring", r"/wav/[0-9a-f]{2}-[01]\.wav$"),
    Rule("keyboard typing", ANY, r"typewriter|keyboard|typing", r"text_typing"),
    Rule("scream", r"0ad", r"/death/.*(male_death|female_death|/death_\d+)"),
    Rule("scream", r"wesnoth", rf"/{HUMANOID}[a-z-]*-(die|hit)(-\d)?\.(ogg|wav)$"),
    Rule("scream", r"warmux", r"/voices/(injured_\w+|death)\d*\.ogg$"),
    Rule("scream", ANY, r"scream|groan|wscream|grunt\d"),
    Rule("bow and arrow", r"0ad", r"/(arrow_(stone|wood|dirt)?_?\d+|bow_attack_\d+|arrowfly)"),
    Rule("bow and arrow", ANY, r"/(cross)?bow(-puny)?(-miss)?\.(ogg|wav)$|/arrow\.wav$|/bow1\.wav$"),
    Rule("sword clash", r"0ad", r"/(swordhit|shield_metal|sling_metal|arrow_metal)"),
    Rule("sword clash", r"wesnoth|freedink|hedgewars", r"/(sword-?\d?|knife_impact|dagger-swish)\."),
    Rule("impact", r"0ad", r"/impact/(shield_wood|sling_wood|sling_stone|fleshimp)"),
    Rule("impact", ANY, r"/(fist|punch|bump|club(-miss)?|mace(-miss)?|squishy-hit|hit_0\d)\."),
    Rule("impact", ANY, r"sp-impact_(light|heavy)"),
    Rule("footsteps", ANY, r"/(fs_|footstep|foorstep|foot\d|steps?\.|mstep|hstep)"),
    Rule("fire", r"0ad", r"/attack/fire/"),
    Rule("fire", ANY, r"/(fire\d*|campfire|flame-big|torch|firewasteland\d*)\.(ogg|wav)$",
         r"voices|friendly|bzflag"),  # bzflag's fire.wav is a tank shot
    Rule("axe chopping", r"0ad", r"/lumbering/lumber_tree_\d+\.ogg$"),
    Rule("axe chopping", r"widelands", r"/woodcutting/(fast_)?woodcutting"),
    Rule("pickaxe", r"0ad", r"/(mining/mine_stone|construction/con_stone)_\d+"),
    Rule("pickaxe", r"widelands", r"/(stonecutting|cutting)/stone(cutter|mason)"),
    Rule("explosion", ANY, r"explo|boom\.wav$|/(lrg|sml)expl|/(lrg|med)can\.|/mortar\.|battle_shell",
         r"disco_grenade|bomb_falling|riot_bomb_exp|grenade_bounce"),
    Rule("horse", ANY, r"/(death_)?horse[_-]", r"donkey"),
    Rule("horse", r"ovos", r"/horse\.mp3$"),
    Rule("engine", r"warzone", r"/vehicle/(con-|cyber|hov|tread|tstart|tland|tflight|thover)"),
    Rule("engine", ANY, r"/(trafic(low|high)\d|tankidle|hevmov|hevidle|engine|tread)\.(ogg|wav)$"),
    Rule("airplane", ANY, r"/(parklandplane\d|plane|aircraft_flying|rcplane)\.(ogg|wav)$"),
    Rule("airplane", r"warzone", r"/vehicle/vtol"),
    Rule("birdsong", ANY, r"/(bird\d*_?\d*|birds\d)\.(ogg|wav)$"),
    Rule("machine hum", r"lincity", r"/(industry(high|light)|mill|windmill(htech)?)\d\.wav$"),
    Rule("machine hum", r"widelands", r"/mill/(mill_turning|weaving)"),
    Rule("machine hum", r"warzone", r"/factory\.ogg$"),
    Rule("saw", ANY, r"/(con_saw_\d+|benchsaw_\d+|sawmill_\d+|sawing_\d+)\."),
    Rule("wolf", ANY, r"/(wolf|coyote)[_-]"),
    Rule("water splash", ANY, r"/(splash|droplet\d|drip|bubble|water-blast|rubberduck_water)\.",
         r"sp-bubles"),
    Rule("flowing water", r"0ad", r"/water/(river_\w+|waterfall|wave\w*)_\d+\.ogg$"),
    Rule("flowing water", r"lincity", r"/water\d\.wav$"),
    Rule("sheep", ANY, r"/(sheep|goat)_?\d*\.(ogg|mp3)$"),
    Rule("hammering", r"0ad", r"/construction/con_wood_\d+\.ogg$"),
    Rule("hammering", ANY, r"/(blacksmith\d|hammering_\d+|geologist_hammer|smith_\d+"
                           r"|toolsmith_\d+|hammer)\.(ogg|wav)$"),
    Rule("gunshot", ANY, r"/(mgbar\d|mgheavy|gun|minigun|battle_mg\d|m16|shotgun(fire)?"
                         r"|gunshot|musket_?\d*)\.(ogg|wav)$"),
    Rule("cow", ANY, r"/(cattle_\d+|ox_\d+|cow)\.(ogg|mp3)$"),
    Rule("elephant", r"0ad", r"/animal/elephant_"),
    Rule("pig", ANY, r"/(pig(_\w+)?|boar)\.(ogg|mp3)$"),
    Rule("crowd cheering", ANY, r"/(applause|foule\d|sportscroud\d|cheer)\.(ogg|wav)$"),
    Rule("wind", ANY, r"/(wind|windgust|windstorm|snowstorm|windleaves)(_\d+)?\.(ogg|wav)$"),
    Rule("rustling leaves", r"0ad", r"/foraging/leaves"),
    Rule("digging", r"0ad", r"/farming/hoe"),
    Rule("war horn", r"wesnoth", r"/horn-signals/horn-\d\.ogg$"),
    Rule("dog", ANY, r"/(dog|civ_dog_bark)\.(ogg|mp3)$"),
    Rule("chicken", ANY, r"/(chicken_\d+|rooster)\.(ogg|mp3)$"),
    Rule("laughter", ANY, r"laugh"),
    Rule("thunder", ANY, r"/(thunder_\d+|lightning)\.ogg$"),
    Rule("rain", r"0ad", r"/weather/rain_\d+\.ogg$"),
]

# loops: one file -> many clips, but one source recording
LOOP_LABELS = {"flowing water", "wind", "rain", "thunder", "machine hum"}


def label_of(package: str, path: str) -> str | None:
    """The label a path gets under RULES (None: unused)."""
    path = path.lower()
    for rule in RULES:
        if rule.matches(package, path):
            return None if rule.label == "_skip" else rule.label
    return None


def collect(cache: Path, packages=PACKAGES, extra_roots: dict | None = None) -> list[Recording]:
    """Labelled effect recordings from every package (extra_roots: name -> (dir, license))."""
    roots = {p: (extract(p, cache), None) for p in packages}
    roots.update(extra_roots or {})
    recordings = []
    for package, (root, lic) in roots.items():
        lic = lic or package_license(package, root)
        for path in audio_files(root):
            rel = str(path.relative_to(root))
            label = label_of(package, "/" + rel)
            if label is None:
                continue
            recordings.append(Recording(
                src=str(path), label=label, category="sfx", source=package,
                source_id=f"{package}:{rel}", split_group=package, license=lic,
            ))
    return recordings
