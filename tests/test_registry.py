"""One place maps a checkpoint's kind to its class: `load_separator`, `get_separator`, `codecsep
separate --model DIR` and `codecsep eval --model codecsep:DIR` take any text-queried separator."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import soundfile as sf
import torch
from helpers import SR, save_tiny_codec, save_tiny_separator, tone

from codecsep import cli
from codecsep.checkpoint import checkpoint_kind, config_from_dict
from codecsep.codecs import load_codec
from codecsep.errors import CodecSepError
from codecsep.evaluate import load_model
from codecsep.separators import load_separator, model_class
from codecsep.separators.api import get_separator
from codecsep.separators.codecformer import Codecformer, CodecformerConfig
from codecsep.separators.hierarchical import HierarchicalConfig, HierarchicalSeparator
from codecsep.separators.masker import MaskerConfig
from codecsep.separators.registry import MODEL_CLASSES, SPEAKER_SEPARATORS, TEXT_QUERIED
from codecsep.separators.resunet import ResUNetConfig, ResUNetSeparator
from codecsep.separators.separator import Separator
from codecsep.text.audio_encoder import AudioEncoderConfig

torch.set_num_threads(1)
E = 64  # the hash encoder's default size: loading builds it from the config's name
RESUNET = ResUNetConfig(n_fft=256, hop_length=64, widths=(4, 8), strides=((2, 2), (1, 2)),
                        cond_dim=E, text_encoder="hash", window_seconds=0.5, overlap_seconds=0.1)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{kind: checkpoint dir} for the three text-queried kinds and a Codecformer."""
    root = tmp_path_factory.mktemp("models")
    codec_dir = save_tiny_codec(root / "codec")
    codec = load_codec(str(codec_dir))
    torch.manual_seed(0)
    hier = HierarchicalConfig(
        codec=str(codec_dir), text_encoder="hash",
        masker=MaskerConfig(dim=32, depth=1, heads=2, ffn_dim=64, cond_dim=2 * E, cond_hidden=16),
        audio=AudioEncoderConfig(n_bands=16, channels=24, depth=2, embed_dim=E,
                                 text_encoder="hash"), stage1_hidden=32)
    former = CodecformerConfig(codec=str(codec_dir), dim=16, depth=1, heads=2, ffn_dim=32)
    return {"codecsep": save_tiny_separator(root / "plain"),
            "hierarchical": HierarchicalSeparator(hier, codec=codec).save(root / "hier"),
            "resunet": ResUNetSeparator(RESUNET).save(root / "resunet"),
            "codecformer": Codecformer(former, codec=codec).save(root / "former")}


def test_every_kind_names_a_class_that_saves_that_kind():
    assert set(MODEL_CLASSES) == {*TEXT_QUERIED, *SPEAKER_SEPARATORS}
    for kind in MODEL_CLASSES:
        assert model_class(kind).checkpoint_kind == kind
    with pytest.raises(CodecSepError, match="unknown model kind 'sepformer'"):
        model_class("sepformer")


def test_load_separator_picks_the_class_from_the_checkpoint(saved):
    classes = {"codecsep": Separator, "hierarchical": HierarchicalSeparator,
               "resunet": ResUNetSeparator}
    wav = torch.randn(1, SR // 2) * 0.1
    for kind, cls in classes.items():
        assert checkpoint_kind(saved[kind]) == kind
        sep = load_separator(saved[kind])
        assert type(sep) is cls and not sep.training and "sha256" in sep.meta
        out = sep.separate(wav, ["dog", "rain"])
        assert out["target"].shape == (2, 1, SR // 2)
        torch.testing.assert_close(out["target"] + out["residual"], wav.expand(2, 1, -1),
                                   atol=1e-4, rtol=0)
        via_eval = load_model(f"codecsep:{saved[kind]}")  # eval's codecsep:DIR takes any kind
        assert type(via_eval) is cls and get_separator(via_eval) is via_eval


def test_the_class_itself_still_refuses_other_kinds(saved):
    with pytest.raises(CodecSepError, match="holds a 'resunet' checkpoint, not a CodecSep"):
        Separator.load(saved["resunet"])
    with pytest.raises(CodecSepError, match="holds a 'codecsep' checkpoint, not a ResUNet"):
        ResUNetSeparator.load(saved["codecsep"])
    with pytest.raises(CodecSepError, match="give the checkpoint folder of a ResUNet"):
        ResUNetSeparator.load(None)


def test_corrupt_or_mismatched_checkpoints_are_refused_in_one_line(saved, tmp_path):
    import json
    import shutil

    def copy(name):
        return Path(shutil.copytree(saved["codecsep"], tmp_path / name))

    broken = copy("json")
    (broken / "config.json").write_text("{not json")
    with pytest.raises(CodecSepError, match="not valid JSON"):
        Separator.load(broken)
    no_class = copy("noclass")
    (no_class / "config.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(CodecSepError, match="does not name a class"):
        load_separator(no_class)
    other = copy("other")  # a config this version's model is not: the weights no longer fit
    cfg = json.loads((other / "config.json").read_text())
    cfg["config"]["masker"]["depth"] += 1
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CodecSepError, match="does not fit a CodecSep"):
        Separator.load(other)


def test_speaker_models_and_non_models_are_refused_in_one_line(saved, tmp_path):
    with pytest.raises(CodecSepError, match="'codecformer' checkpoint, not a text-queried"):
        load_separator(saved["codecformer"])
    with pytest.raises(CodecSepError, match="'mica' checkpoint, not a text-queried"):
        load_separator(saved["codecsep"].parent / "codec")
    with pytest.raises(CodecSepError, match="not a CodecSep checkpoint"):
        load_separator(tmp_path)
    assert isinstance(model_class("codecformer").load(saved["codecformer"]), Codecformer)


def test_separate_cli_runs_a_resunet_and_says_it_has_no_codes(saved, tmp_path, capsys):
    wav = tone(tmp_path / "a.wav", 440.0, seconds=0.7)
    out = tmp_path / "out"
    code = cli.main(["separate", str(wav), "-p", "dog", "--model", str(saved["resunet"]),
                     "-o", str(out)])
    assert code == 0 and sf.info(str(out / "a" / "dog.wav")).frames == int(0.7 * SR)
    capsys.readouterr()
    code = cli.main(["separate", str(wav), "-p", "dog", "--model", str(saved["resunet"]),
                     "--codes-out", "-o", str(tmp_path / "codes")])
    err = capsys.readouterr().err
    assert code == 2 and "need a codec-based separator" in err and err.count("\n") == 1
    assert not (tmp_path / "codes").exists()


def test_nested_configs_round_trip_through_plain_dicts():
    cfg = HierarchicalConfig(masker=MaskerConfig(dim=48, cond_dim=2 * E), stage1_hidden=8,
                             audio=AudioEncoderConfig(embed_dim=E, text_encoder="hash"))
    assert config_from_dict(HierarchicalConfig, asdict(cfg)) == cfg
    assert HierarchicalConfig.from_dict({"stage1_depth": 3}) == HierarchicalConfig(stage1_depth=3)
    with pytest.raises(CodecSepError, match=r"unknown MaskerConfig keys: \['depht'\]"):
        config_from_dict(HierarchicalConfig, {"masker": {"depht": 2}})


def test_codec_only_features_refuse_a_waveform_separator_in_one_line(saved, tmp_path):
    from codecsep.export import export_onnx
    from codecsep.separators.streaming import StreamingSeparator

    resunet = load_separator(saved["resunet"])
    with pytest.raises(CodecSepError, match="streaming needs a codec-based separator"):
        StreamingSeparator(resunet, ["dog"])
    pytest.importorskip("onnx")
    with pytest.raises(CodecSepError, match="ONNX export supports CodecSep separators, not a 'hie"):
        export_onnx(load_separator(saved["hierarchical"]), tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()
