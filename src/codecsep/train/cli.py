"""`codecsep train {codec,separator,...}`: every recipe's knobs come from its dataclasses.

Each dataclass field becomes a flag (`--batch-size 16`, `--model.masker.depth 8`), so the command
that trained a checkpoint (recorded in its meta.json) is also the full description of the run.
"""

from __future__ import annotations

import argparse
import importlib
import types
import typing
from dataclasses import dataclass, fields, is_dataclass, replace


def parse_bool(text: str) -> bool:
    """A strict BOOL: a typo such as `ture` is an error, not a quiet False."""
    value = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    if text.lower() not in value:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value[text.lower()]


def field_parser(hint):
    """The function that turns a flag's text into the field's value, from the field's type hint
    (`int | None` -> int, `tuple[int, ...]` -> comma-separated ints), or None for fields that
    cannot be given as one flag (tuples of dataclasses)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        return parse_bool
    if typing.get_origin(hint) is tuple:
        items = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if any(is_dataclass(a) for a in items):
            return None
        item = field_parser(items[0]) if items else str
        return lambda text: tuple(item(v) for v in text.split(","))
    return hint


def add_dataclass_flags(parser, base, prefix: str = "") -> None:
    """One flag per field of the dataclass instance `base` (nested dataclasses get a prefix)."""
    hints = typing.get_type_hints(type(base))
    for f in fields(base):
        default = getattr(base, f.name)
        name = f"--{prefix}{f.name.replace('_', '-')}"
        if is_dataclass(default):
            add_dataclass_flags(parser, default, prefix=f"{prefix}{f.name}.")
            continue
        parse = field_parser(hints[f.name])
        if parse is None:
            continue
        metavar = ("BOOL" if parse is parse_bool
                   else "A,B,..." if isinstance(default, tuple) else None)
        parser.add_argument(name, type=parse, default=None, metavar=metavar,
                            help=f"(default {default})")


def build_dataclass(base, args: argparse.Namespace, prefix: str = ""):
    """`base` (a dataclass instance) with the fields given on the command line replaced."""
    changes = {}
    for f in fields(base):
        default = getattr(base, f.name)
        key = f"{prefix}{f.name}"
        if is_dataclass(default):
            changes[f.name] = build_dataclass(default, args, prefix=f"{key}.")
        elif getattr(args, key, None) is not None:
            changes[f.name] = getattr(args, key)
    return replace(base, **changes)


@dataclass(frozen=True)
class Recipe:
    """A `codecsep train NAME` entry: `module:function(manifest, out_dir, **configs, loop=...,
    export_dir=...)` and the config dataclasses that become its flags (kwarg, class, prefix)."""

    help: str
    function: str
    configs: tuple[tuple[str, str, str], ...]
    loop: str = "codecsep.train.loop:LoopConfig"


RECIPES = {
    "codec": Recipe("train the Mica codec's bitstream path", "codecsep.train.codec:train_codec",
                    (("config", "codecsep.codecs.mica:MicaConfig", "codec."),
                     ("recipe", "codecsep.train.codec:CodecRecipe", ""))),
    "separator": Recipe("train the CodecSep masker", "codecsep.train.separator:train_separator",
                        (("config", "codecsep.separators.separator:SeparatorConfig", "model."),
                         ("recipe", "codecsep.train.separator:SeparatorRecipe", ""))),
    "postnet": Recipe("train the learned refinement of a separator's post-filter (maskers frozen)",
                      "codecsep.train.postnet:train_postnet",
                      (("post", "codecsep.train.postnet:PostNetRecipe", ""),
                       ("recipe", "codecsep.train.separator:SeparatorRecipe", ""))),
    "resunet": Recipe("train the AudioSep-style ResUNet peer on the same mixtures",
                      "codecsep.train.resunet:train_resunet",
                      (("config", "codecsep.separators.resunet:ResUNetConfig", "model."),
                       ("recipe", "codecsep.train.separator:SeparatorRecipe", ""))),
    "audio-encoder": Recipe("align an audio encoder with the text space (contrastive)",
                            "codecsep.train.audio_encoder:train_audio_encoder",
                            (("config", "codecsep.text.audio_encoder:AudioEncoderConfig", "model."),
                             ("recipe", "codecsep.train.audio_encoder:AudioEncoderRecipe", "")),
                            "codecsep.train.audio_encoder:AUDIO_ENCODER_LOOP"),
    "hierarchical": Recipe("train the two-stage (HSM-TSS-style) CodecSep separator",
                           "codecsep.train.hierarchical:train_hierarchical",
                           (("config", "codecsep.separators.hierarchical:HierarchicalConfig",
                             "model."),
                            ("recipe", "codecsep.train.hierarchical:HierarchicalRecipe", ""))),
    "codecformer": Recipe("train Codecformer (two-speaker separation on codec latents)",
                          "codecsep.train.speech:train_codecformer",
                          (("config", "codecsep.separators.codecformer:CodecformerConfig", "model."),
                           ("recipe", "codecsep.train.speech:SpeechRecipe", "")),
                          "codecsep.train.speech:CODECFORMER_LOOP"),
    "codesep": Recipe("train CodeSep (per-speaker base tokens + auxiliary tokens)",
                      "codecsep.train.speech:train_codesep",
                      (("config", "codecsep.separators.codesep:CodeSepConfig", "model."),
                       ("recipe", "codecsep.train.speech:SpeechRecipe", "")),
                      "codecsep.train.speech:CODESEP_LOOP"),
}


def _resolve(ref: str):
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _defaults(obj):
    """A dataclass default: the class itself, or a preset instance (e.g. CODESEP_LOOP)."""
    return obj if not isinstance(obj, type) else obj()


def _run(args) -> int:
    recipe = RECIPES[args.recipe]
    kwargs = {kw: build_dataclass(_defaults(_resolve(ref)), args, prefix)
              for kw, ref, prefix in recipe.configs}
    loop = build_dataclass(_defaults(_resolve(recipe.loop)), args)
    _resolve(recipe.function)(args.manifest, args.out, loop=loop, export_dir=args.export, **kwargs)
    return 0


class RecipeParser(argparse.ArgumentParser):
    """A recipe's parser that adds its dataclass flags when first used (to parse or to print
    help), so building `codecsep`'s parser imports no recipe and no model."""

    def __init__(self, *args, recipe: Recipe | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.recipe = recipe

    def add_recipe_flags(self) -> None:
        recipe, self.recipe = self.recipe, None  # once
        if recipe is not None:
            for _, ref, prefix in recipe.configs:
                add_dataclass_flags(self, _defaults(_resolve(ref)), prefix)
            add_dataclass_flags(self, _defaults(_resolve(recipe.loop)))

    def parse_known_args(self, args=None, namespace=None):
        self.add_recipe_flags()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self.add_recipe_flags()
        return super().format_usage()

    def format_help(self) -> str:
        self.add_recipe_flags()
        return super().format_help()


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model (codec, separator, postnet, audio-encoder, "
                                             "hierarchical, resunet, codecformer, codesep)", description=__doc__)
    rsub = p.add_subparsers(dest="recipe", metavar="RECIPE", required=True,
                            parser_class=RecipeParser)
    for name, recipe in RECIPES.items():
        r = rsub.add_parser(name, help=recipe.help, description=recipe.help.capitalize(),
                            recipe=recipe)
        r.add_argument("--manifest", required=True, help="corpus manifest.jsonl")
        r.add_argument("--out", required=True, help="run directory (resumed if it exists)")
        r.add_argument("--export", default=None, help="where to write the shippable checkpoint")
        r.set_defaults(func=_run)
