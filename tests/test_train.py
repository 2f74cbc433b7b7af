import numpy as np
import pytest
import soundfile as sf
import torch

from codecsep.codecs.mica import MicaCodec, MicaConfig
from codecsep.data.bank import ClipBank
from codecsep.data.manifest import Clip, write_manifest
from codecsep.separators.masker import MaskerConfig
from codecsep.separators.separator import Separator, SeparatorConfig
from codecsep.text.base import get_text_encoder
from codecsep.train.codec import CodecRecipe, train_codec
from codecsep.train.loop import LoopConfig
from codecsep.train.separator import SeparatorRecipe, draw_mixture, train_separator


def synthetic_manifest(tmp_path, n=8):
    rng = np.random.default_rng(0)
    clips = []
    t = np.arange(16000) / 16000
    for i in range(n):
        x = 0.3 * np.sin(2 * np.pi * (220 * (1 + i % 4)) * t) + 0.02 * rng.standard_normal(len(t))
        p = tmp_path / f"c{i}.wav"
        sf.write(p, x.astype(np.float32), 16000)
        clips.append(Clip(path=str(p), label=f"tone {i % 4}", captions=(f"tone {i % 4}",),
                          source="synthetic", source_id=f"s{i}", split="train", duration=1.0))
    return write_manifest(clips, tmp_path / "manifest.jsonl")


def tiny_parts() -> dict:
    """A tiny separator config, the hash text encoder and a tiny Mica codec: trains in seconds."""
    return dict(config=SeparatorConfig(masker=MaskerConfig(dim=32, depth=1, heads=2, ffn_dim=64,
                                                           cond_hidden=16)),
                text_encoder=get_text_encoder("hash", dim=384),
                codec=MicaCodec(MicaConfig(channels=16, depth=1, n_codebooks=2, codebook_size=16)))


def train_tiny(manifest, out, steps: int, parts: dict, **recipe):
    """`train_separator` on `tiny_parts()` for `steps` steps (batch 2 of 0.5 s), exporting at the end."""
    return train_separator(str(manifest), str(out),
                           recipe=SeparatorRecipe(batch_size=2, seconds=0.5, bf16=False, **recipe),
                           loop=LoopConfig(steps=steps, log_every=1, ckpt_every=steps), **parts)


def test_draw_mixture_is_sum_of_sources_and_deterministic(tmp_path):
    from codecsep.data.manifest import read_manifest

    bank = ClipBank(read_manifest(synthetic_manifest(tmp_path)))
    r = SeparatorRecipe(p_three=1.0)
    mix, sources, labels = draw_mixture(bank, r, 8000, np.random.default_rng(3))
    again = draw_mixture(bank, r, 8000, np.random.default_rng(3))
    assert np.array_equal(mix, again[0]) and labels == again[2]
    assert sources.shape == (3, 8000) and len(set(labels)) == 3
    assert np.allclose(mix, sources.sum(0), atol=1e-6)


def test_confusable_draws_pair_each_class_with_its_neighbours_and_leave_old_streams_alone(tmp_path):
    import json

    from codecsep.errors import CodecSepError
    from codecsep.train.separator import confusable_neighbours, pick_classes

    labels = ["a", "b", "c", "d", "e"]
    table = tmp_path / "near.json"
    table.write_text(json.dumps({"neighbours": {
        "a": [["b", 0.9], ["c", 0.8]], "b": [["a", 0.9], ["zz", 0.5]], "c": [["d", 0.7], ["a", 0.6]],
        "d": [["e", 0.9], ["c", 0.7]], "e": [["d", 0.9], ["a", 0.1]]}}))
    near = confusable_neighbours(str(table), labels)
    assert near[0].tolist() == [1, 2] and near[1].tolist() == [0]  # a label the bank lacks is dropped
    # off (p = 0): exactly the uniform draw earlier recipes made
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(20):
        assert np.array_equal(pick_classes(5, 3, a, near, 0.0), b.choice(5, size=3, replace=False))
    rng = np.random.default_rng(0)
    for _ in range(200):
        first, *rest = pick_classes(5, 2, rng, near, 1.0)
        assert set(rest) <= set(near[first].tolist()) and first not in rest
    # three sources where a class has a single neighbour: that draw falls back to uniform
    picks = [pick_classes(5, 3, rng, near, 1.0) for _ in range(200)]
    assert all(len(set(p.tolist())) == 3 for p in picks)
    with pytest.raises(CodecSepError, match="no neighbours"):
        confusable_neighbours(str(table), labels + ["f"])
    with pytest.raises(CodecSepError, match="--confusable"):
        SeparatorRecipe(p_confusable=0.3)
    with pytest.raises(CodecSepError, match="p_confusable"):
        SeparatorRecipe(p_confusable=1.5, confusable=str(table))


def test_the_confusable_table_lists_the_nearest_other_classes():
    from helpers import load_script

    near = load_script("confusable_classes").nearest(
        torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]), dim=1),
        ["x", "y", "z"], 1)
    assert near == {"x": [["y", 0.8]], "y": [["x", 0.8]], "z": [["y", 0.6]]}


def test_batches_pair_each_mixture_with_two_targets(tmp_path):
    from codecsep.data.manifest import read_manifest
    from codecsep.train.separator import PromptTable, separator_batches

    bank = ClipBank(read_manifest(synthetic_manifest(tmp_path)))
    prompts = PromptTable({c.label: c.captions for c in bank.clips}, get_text_encoder("hash", dim=384))
    recipe = SeparatorRecipe(batch_size=4, seconds=0.5, embed_noise=0.0)
    mix, target, cond = next(separator_batches(bank, prompts, recipe, 16000, 0))
    assert torch.equal(mix[0], mix[1]) and not torch.equal(target[0], target[1])
    assert not torch.equal(cond[0], cond[1])


def test_separator_training_resumes_and_exports(tmp_path):
    manifest = synthetic_manifest(tmp_path)
    kw = dict(tiny_parts(), recipe=SeparatorRecipe(batch_size=2, seconds=0.5, bf16=False))
    out = tmp_path / "run"
    train_separator(str(manifest), str(out), loop=LoopConfig(steps=3, log_every=1, ckpt_every=3), **kw)
    train_separator(str(manifest), str(out), loop=LoopConfig(steps=5, log_every=1, ckpt_every=5), **kw)
    rows = (out / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 5  # header + steps 1..5: the second run resumed at step 3
    assert (out / "loss.png").is_file()
    sep = Separator.load(out / "checkpoint", codec=kw["codec"], text_encoder=kw["text_encoder"])
    assert sep.meta["step"] == 5 and "trained_by" in sep.meta
    # the checkpoint carries the captions it trained on (prompt anchoring), train split only
    from codecsep.data.manifest import read_manifest

    train_caps = {c for clip in read_manifest(manifest, split="train") for c in clip.captions}
    assert set(sep.config.anchors.texts) == train_caps and sep.config.anchors.weight == 0.5


def test_codec_training_runs_and_exports(tmp_path):
    manifest = synthetic_manifest(tmp_path)
    out = tmp_path / "codec"
    cfg = MicaConfig(channels=16, depth=1, n_codebooks=2, codebook_size=16, codebook_dim=4)
    export = train_codec(str(manifest), str(out), cfg, CodecRecipe(batch_size=2, seconds=0.25),
                         LoopConfig(steps=2, log_every=1, ckpt_every=2))
    from codecsep.codecs import load_mica

    codec = load_mica(export)
    assert codec.n_codebooks == 2


def test_train_cli_flags_map_onto_the_recipe_dataclasses():
    import argparse

    from codecsep.separators.separator import SeparatorConfig
    from codecsep.train.cli import build_dataclass, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "separator", "--manifest", "m", "--out", "o",
                              "--model.masker.depth", "3", "--batch-size", "4", "--bf16", "false",
                              "--lr", "0.01"])
    cfg = build_dataclass(SeparatorConfig(), args, "model.")
    assert cfg.masker.depth == 3 and cfg.masker.dim == SeparatorConfig().masker.dim
    assert args.batch_size == 4 and args.bf16 is False and args.lr == 0.01
    args = parser.parse_args(["train", "resunet", "--manifest", "m", "--out", "o",
                              "--model.widths", "4,8,16"])
    assert getattr(args, "model.widths") == (4, 8, 16)
    for recipe in ("codec", "postnet", "resunet", "codecformer", "codesep"):
        parser.parse_args(["train", recipe, "--manifest", "m", "--out", "o"])
    # types come from the type hints, not from the defaults (None, an empty tuple)
    args = parser.parse_args(["train", "codecformer", "--manifest", "m", "--out", "o",
                              "--codec-sisdr-quantizers", "8"])
    assert args.codec_sisdr_quantizers == 8
    args = parser.parse_args(["train", "separator", "--manifest", "m", "--out", "o",
                              "--model.members", "1,2"])
    assert getattr(args, "model.members") == (1, 2)
    with pytest.raises(SystemExit):  # a typo is an error, not a quiet False
        parser.parse_args(["train", "separator", "--manifest", "m", "--out", "o", "--bf16", "ture"])


def test_warm_start_continues_step_and_history_from_a_shipped_checkpoint(tmp_path):
    manifest = synthetic_manifest(tmp_path)
    kw = tiny_parts()
    first = train_tiny(manifest, tmp_path / "a", 2, kw)
    second = train_tiny(manifest, tmp_path / "b", 3, kw, init_from=str(first))
    sep = Separator.load(second, codec=kw["codec"], text_encoder=kw["text_encoder"])
    assert sep.meta["step"] == 3
    assert [h["start_step"] for h in sep.meta["history"]] == [0, 2]


def test_stop_at_pauses_on_the_same_schedule_and_resumes(tmp_path):
    import itertools

    from codecsep.train.loop import Trainer, lr_at

    def run(stop_at):
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 1)
        batches = (torch.ones(4, 2) * i for i in itertools.count())
        exported = []
        cfg = LoopConfig(steps=6, lr=1e-2, warmup=1, log_every=1, ckpt_every=100, stop_at=stop_at)
        t = Trainer(model, batches, lambda m, x: {"loss": m(x).pow(2).mean()},
                    lambda m, step: exported.append(step), tmp_path, cfg)
        t.run()
        return t.step, exported

    assert run(stop_at=4) == (4, [4])  # paused, checkpointed and exported at 4
    assert run(stop_at=0) == (6, [6])  # resumed from 4 and ran to the end of the schedule
    rows = (tmp_path / "log.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4, 5, 6]
    lrs = [float(r.split(",")[1]) for r in rows]
    assert lrs[4] == lr_at(5, LoopConfig(steps=6, lr=1e-2, warmup=1))  # the 6-step schedule


def test_a_resumed_stream_is_not_a_replay_of_the_first_batches(tmp_path):
    from codecsep.data.manifest import read_manifest
    from codecsep.train.separator import PromptTable, separator_batches

    bank = ClipBank(read_manifest(synthetic_manifest(tmp_path), split="train"), 16000)
    prompts = PromptTable({c.label: c.captions for c in bank.clips}, get_text_encoder("hash", dim=8))
    recipe = SeparatorRecipe(batch_size=2, seconds=0.25, p_augment=0.0)

    def first(start):
        return next(separator_batches(bank, prompts, recipe, 16000, 0, lambda: start))[0]

    assert torch.equal(first(0), first(0))  # a fresh run is reproducible
    assert torch.equal(first(500), first(500))  # and so is a resume at a given step
    assert not torch.equal(first(0), first(500))


def test_varied_crop_lengths_stay_in_range_and_fixed_runs_keep_their_stream(tmp_path):
    from codecsep.data.manifest import read_manifest
    from codecsep.errors import CodecSepError
    from codecsep.train.separator import PromptTable, separator_batches

    bank = ClipBank(read_manifest(synthetic_manifest(tmp_path), split="train"), 16000)
    prompts = PromptTable({c.label: c.captions for c in bank.clips}, get_text_encoder("hash", dim=8))
    varied = separator_batches(bank, prompts, SeparatorRecipe(batch_size=2, seconds=0.5,
                                                              seconds_min=0.1), 16000, 0)
    lengths = {next(varied)[0].shape[-1] for _ in range(8)}
    assert len(lengths) > 1 and all(1600 <= n <= 8000 for n in lengths)
    fixed = separator_batches(bank, prompts, SeparatorRecipe(batch_size=2, seconds=0.5), 16000, 0)
    assert {next(fixed)[0].shape[-1] for _ in range(3)} == {8000}
    with pytest.raises(CodecSepError, match="seconds_min"):
        next(separator_batches(bank, prompts, SeparatorRecipe(seconds=0.5, seconds_min=1.0),
                               16000, 0))


def test_schedule_start_runs_a_fresh_cycle_from_a_carried_over_step():
    """`schedule_start`: warmup and cosine run over schedule_start..steps, so a continuation whose
    step carries over (36,000) gets the same curve a new run gets over its first steps."""
    from codecsep.train.loop import LoopConfig, lr_at

    fresh = LoopConfig(steps=1500, lr=1.5e-4, warmup=100)
    cycle = LoopConfig(steps=37500, lr=1.5e-4, warmup=100, schedule_start=36000)
    assert [lr_at(36000 + s, cycle) for s in (0, 50, 100, 800, 1500)] == \
           [lr_at(s, fresh) for s in (0, 50, 100, 800, 1500)]
    assert lr_at(37500, cycle) == pytest.approx(1.5e-5)
    assert lr_at(36000, LoopConfig(steps=37500, lr=1.5e-4, warmup=100)) < 2e-5  # without it: the tail


def test_keep_snapshots_copies_each_new_step(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    export = tmp_path / "checkpoint"
    export.mkdir()
    (export / "model.safetensors").write_bytes(b"weights")
    from codecsep.checkpoint import file_sha256

    sha = file_sha256(export / "model.safetensors")
    (export / "meta.json").write_text(json.dumps({"step": 750, "sha256": sha}))
    script = Path(__file__).resolve().parents[1] / "scripts" / "keep_snapshots.py"
    r = subprocess.run([sys.executable, str(script), str(export), str(tmp_path / "snap"),
                        "--until", "750", "--poll", "0.1"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "snap_750" / "model.safetensors").read_bytes() == b"weights"


def test_band_refiner_learns_at_its_own_rate(tmp_path):
    """`band_lr_mult`: the refiner's group runs at a multiple of the schedule's LR."""
    import itertools

    from codecsep.separators.masker import Masker
    from codecsep.train.loop import Trainer, lr_at
    from codecsep.train.separator import masker_param_groups

    masker = Masker(MaskerConfig(dim=16, depth=1, heads=2, ffn_dim=32, cond_dim=8, cond_hidden=8,
                                 band_width=32, band_dim=8, band_heads=2, band_ffn_dim=16))
    groups = masker_param_groups(masker, 10.0)
    assert sum(len(g["params"]) for g in groups) == len(list(masker.parameters()))
    assert all(p is q for p, (n, q) in zip(groups[1]["params"], [
        (n, q) for n, q in masker.named_parameters() if n.startswith("bands.")]))
    cfg = LoopConfig(steps=3, lr=1e-3, warmup=1, log_every=1, ckpt_every=100)
    batches = ((torch.randn(2, 320, 5), torch.randn(2, 8)) for _ in itertools.count())
    t = Trainer(masker, batches, lambda m, x: {"loss": m(*x).mean()}, lambda m, s: None,
                tmp_path, cfg, params=groups)
    t.run()
    base, bands = t.opt.param_groups
    assert bands["lr"] == pytest.approx(10 * base["lr"]) and base["lr"] == lr_at(2, cfg)
    assert masker.bands.out.weight.abs().sum() > 0  # the zero-initialised output has moved


def test_distillation_adds_the_teachers_outputs_as_a_second_reference(tmp_path):
    from dataclasses import replace

    from codecsep.errors import CodecSepError
    from codecsep.train.separator import load_teacher, make_step_fn

    manifest = synthetic_manifest(tmp_path)
    kw = tiny_parts()
    first = train_tiny(manifest, tmp_path / "t", 1, kw)
    teacher = load_teacher(str(first), kw["config"], kw["codec"], kw["text_encoder"])
    assert not any(p.requires_grad for p in teacher.parameters())
    student = Separator.load(first, codec=kw["codec"], text_encoder=kw["text_encoder"])
    g = torch.Generator().manual_seed(0)
    target = 0.1 * torch.randn(2, 1, 8000, generator=g)
    batch = (target + 0.1 * torch.randn(2, 1, 8000, generator=g), target, torch.randn(2, 384, generator=g))
    plain = make_step_fn(SeparatorRecipe(bf16=False), kw["codec"])(student, batch)
    both = make_step_fn(SeparatorRecipe(bf16=False, w_teacher=0.5), kw["codec"], teacher)(student, batch)
    # a student equal to its teacher matches it exactly: both terms sit at the loss floor (-30 dB each)
    assert float(both["teacher_sisdr"].detach()) == 30.0
    assert torch.allclose(both["loss"], plain["loss"] + 0.5 * (-30.0 - 30.0))
    # a teacher on another text encoder cannot teach this student
    with pytest.raises(CodecSepError, match="text_encoder"):
        load_teacher(str(first), replace(kw["config"], text_encoder="clap"), kw["codec"], kw["text_encoder"])
    # end to end: a distilled run trains, logs its agreement with the teacher and records the teacher
    out = train_tiny(manifest, tmp_path / "s", 2, kw, teacher=str(first))
    assert "teacher_sisdr" in (tmp_path / "s" / "log.csv").read_text().splitlines()[0]
    assert Separator.load(out, codec=kw["codec"], text_encoder=kw["text_encoder"]).meta["recipe"]["teacher"] == str(first)


def test_coded_inputs_reach_the_masker_through_the_codes(tmp_path):
    from codecsep.errors import CodecSepError
    from codecsep.train.separator import make_step_fn

    kw = tiny_parts()
    sep = Separator(kw["config"], codec=kw["codec"], text_encoder=kw["text_encoder"]).eval()
    codec = kw["codec"]
    g = torch.Generator().manual_seed(0)
    mix = 0.1 * torch.randn(3, 1, 8000, generator=g)
    z = codec.encode(mix)
    coded = sep.through_codes(z, torch.tensor([0, 2, 1]))
    assert torch.equal(coded[0], z[0])  # 0: the continuous latent
    with torch.no_grad():
        for i, n in ((1, 2), (2, 1)):
            torch.testing.assert_close(coded[i], codec.dequantize(codec.quantize(z[i:i + 1], n))[0])
    # the masker sees the coded latent: the output equals the mask of it, decoded
    cond = torch.randn(3, 384, generator=g)
    with torch.no_grad():
        target, _ = sep(mix, cond, through_codes=torch.tensor([2, 2, 2]))
        zc = sep.through_codes(z, torch.tensor([2, 2, 2]))
        torch.testing.assert_close(target, codec.decode(sep.masker(zc, cond) * zc, 8000))
    # the recipe: every item coded with p_coded = 1, codebook counts checked against the codec
    batch = (mix, 0.5 * mix, cond)
    logs = make_step_fn(SeparatorRecipe(bf16=False, p_coded=1.0, coded_quantizers="1,2"), codec)(sep, batch)
    assert torch.isfinite(logs["loss"])
    with pytest.raises(CodecSepError, match="has 2 codebooks"):
        make_step_fn(SeparatorRecipe(p_coded=0.5, coded_quantizers="1,3"), codec)
    for bad in ({"coded_quantizers": "8"}, {"coded_quantizers": "3,2"}, {"p_coded": 1.5}):
        with pytest.raises(CodecSepError):
            SeparatorRecipe(**bad)
    # end to end, recorded in the recipe
    out = train_tiny(synthetic_manifest(tmp_path), tmp_path / "c", 1, kw, p_coded=0.5,
                     coded_quantizers="1,2")
    assert Separator.load(out, codec=codec, text_encoder=kw["text_encoder"]).meta["recipe"]["p_coded"] == 0.5


def test_the_loss_can_be_taken_after_the_post_filter(tmp_path):
    from codecsep.errors import CodecSepError
    from codecsep.losses import neg_si_sdr
    from codecsep.separators.postfilter import PostFilter, apply_postfilter
    from codecsep.train.separator import make_step_fn

    kw = tiny_parts()
    sep = Separator(kw["config"], codec=kw["codec"], text_encoder=kw["text_encoder"]).eval()  # no dropout
    g = torch.Generator().manual_seed(0)
    target = 0.1 * torch.randn(2, 1, 8000, generator=g)
    mix = target + 0.1 * torch.randn(2, 1, 8000, generator=g)
    mix[1, :, 4000:] = 0  # a silent stretch: every part is zero there, the gradient must stay finite
    target[1, :, 4000:] = 0
    batch = (mix, target, torch.randn(2, 384, generator=g))
    logs = make_step_fn(SeparatorRecipe(bf16=False, postfilter="256,1.25"), kw["codec"])(sep, batch)
    with torch.no_grad():  # the logged target SI-SDR is the filtered estimate's
        est, res = sep(mix, batch[2])
        filt = apply_postfilter(mix[:, 0], torch.stack([est[:, 0], res[:, 0]]), PostFilter(256, 1.25))
        want = -neg_si_sdr(filt[0], target[:, 0]).clamp(max=30).mean()
    torch.testing.assert_close(logs["target_sisdr"].detach(), want, atol=1e-4, rtol=1e-4)
    logs["loss"].backward()
    grads = [p.grad for p in sep.masker.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    off = make_step_fn(SeparatorRecipe(bf16=False), kw["codec"])(sep, batch)
    assert not torch.allclose(off["target_sisdr"].detach(), logs["target_sisdr"].detach())
    with pytest.raises(CodecSepError, match="postfilter"):
        SeparatorRecipe(postfilter="102,1")  # not a multiple of 4


def test_a_resumed_log_keeps_its_columns_aligned(tmp_path):
    """A resumed run whose rows name other loss terms writes under the header that is there,
    warns once about the columns it cannot log and never shifts a value into another column."""
    import csv
    import warnings
    from types import SimpleNamespace

    from codecsep.train.loop import Trainer

    first = SimpleNamespace(rank=0, out=tmp_path, _log_columns=None)
    Trainer._log(first, {"step": 1, "loss": 0.5, "sisdr": 3.0})
    resumed = SimpleNamespace(rank=0, out=tmp_path, _log_columns=None)  # a new Trainer
    with pytest.warns(UserWarning, match="no column for \\['teacher'\\]"):
        Trainer._log(resumed, {"step": 2, "loss": 0.4, "teacher": 9.0, "sisdr": 4.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        Trainer._log(resumed, {"step": 3, "teacher": 8.0, "loss": 0.3})
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [r["sisdr"] for r in rows] == ["3.0", "4.0", ""]
    assert [r["loss"] for r in rows] == ["0.5", "0.4", "0.3"]


def test_train_postnet_keeps_the_maskers_and_logs_its_gain_over_the_analytic_filter(tmp_path):
    from dataclasses import replace

    from test_postfilter import refined_ensemble

    from codecsep.errors import CodecSepError
    from codecsep.separators.postfilter import PostFilter
    from codecsep.train.postnet import PostNetRecipe, train_postnet

    manifest = synthetic_manifest(tmp_path)
    sep = refined_ensemble(tmp_path)
    plain = Separator(replace(sep.config, postfilter=PostFilter(1024, 1.25)), codec=sep.codec,
                      text_encoder=sep.text_encoder)
    state = {k: v for k, v in sep.masker.state_dict().items() if not k.startswith("postnet.")}
    plain.masker.load_state_dict(state)
    source = plain.save(tmp_path / "plain", meta={"step": 7, "trained_by": "codecsep train separator"})
    recipe = SeparatorRecipe(batch_size=2, seconds=0.5)
    out = train_postnet(str(manifest), str(tmp_path / "run"), post=PostNetRecipe(str(source), 8),
                        recipe=recipe, loop=LoopConfig(steps=3, log_every=1, ckpt_every=3, lr=1e-2))
    header = (tmp_path / "run" / "log.csv").read_text().splitlines()[0]
    assert "gain_db" in header and "target_sisdr" in header
    refined = Separator.load(out)
    assert refined.config.postfilter == PostFilter(1024, 1.25, net=8) and refined.refiner is not None
    before = Separator.load(source).masker.state_dict()
    after = refined.masker.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the maskers are frozen
    assert after["postnet.net.4.weight"].abs().sum() > 0  # the zero output layer has learned
    assert refined.meta["refined_from"]["path"] == str(source)
    assert refined.meta["postnet_step"] == 3 and refined.meta["step"] == 7  # the maskers' step
    # a refinement of that width is continued; masker-only settings and no post-filter are refused
    train_postnet(str(manifest), str(tmp_path / "run2"), post=PostNetRecipe(str(out), 8),
                  recipe=recipe, loop=LoopConfig(steps=1, log_every=1, ckpt_every=1))
    # other neighbourhoods make a new refinement, and its checkpoint keeps them
    wide = train_postnet(str(manifest), str(tmp_path / "run3"),
                         post=PostNetRecipe(str(out), 8, pools="3x3,81x3,1x27"), recipe=recipe,
                         loop=LoopConfig(steps=1, log_every=1, ckpt_every=1))
    wide = Separator.load(wide)
    assert wide.config.postfilter.pools == ((3, 3), (81, 3), (1, 27))
    assert wide.inference_tag().endswith("+net8:p3x3,81x3,1x27")
    assert wide.masker.postnet.net[0].in_channels == 4 + 3 + 3 * (2 + 3)
    with pytest.raises(CodecSepError, match="odd"):
        PostNetRecipe(pools="3x4").pool_sizes
    with pytest.raises(CodecSepError, match="--teacher"):
        train_postnet(str(manifest), str(tmp_path / "x"), post=PostNetRecipe(str(source), 8),
                      recipe=replace(recipe, teacher=str(source)))
    off = Separator(replace(plain.config, postfilter=PostFilter()), codec=sep.codec,
                    text_encoder=sep.text_encoder)
    off.masker.load_state_dict(state)
    with pytest.raises(CodecSepError, match="no post-filter"):
        train_postnet(str(manifest), str(tmp_path / "y"),
                      post=PostNetRecipe(str(off.save(tmp_path / "off")), 8), recipe=recipe)
