"""ONNX export of a CodecSep separator, and `OnnxSeparator`, which runs it with onnxruntime.

    codecsep export --format onnx --model runs/sep/checkpoint -o exported/ --prompt "birdsong" --rtf

Exported graphs (opset 17, dynamic batch and frame/sample axes), each a plain ONNX file:
  encoder.onnx         wav (B, 1, T) -> latent (B, D, F)              MDCT as a strided Conv
  decoder.onnx         latent (B, D, F) -> wav (B, 1, F * hop)        inverse MDCT (crop to T)
  masker.onnx          latent (B, D, F), cond (P, E) -> target (P, B, D, F)
  masker_prompts.onnx  latent (B, D, F) -> target (P, B, D, F), the --prompt embeddings baked in
                       (with a learned post-filter, both maskers give every part of
                       `Separator.split_latent` instead: parts (K, P, B, D, F))
  postnet.onnx         the learned post-filter's network (`postfilter.PostNet`), when there is one
  quantize.onnx        latent (B, D, F) -> codes (B, N, F) int64      analysis net + RVQ argmax
  dequantize.onnx      codes (B, N, F), n_quantizers () int64 -> latent (B, D, F)
plus `onnx.json`, which records the shapes, rates, prompts and the source checkpoint. The
waveform post-filter (`separators.postfilter`, FFTs) runs outside the graphs, as `onnx.json`'s
"postfilter" says (its learned network, if any, inside `postnet.onnx`).
Quantizer codes are residual, so the first n codebooks of `quantize.onnx` are the codes at n
codebooks; `dequantize.onnx` ignores the codebooks from `n_quantizers` on.
The legacy TorchScript exporter (dynamo=False) is used: it handles the dynamic lengths here,
is 10x faster to export and needs no onnxscript.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import config_from_dict
from .errors import CodecSepError, positive_float, require
from .separators.base import members_arg
from .separators.chunking import overlap_add, shift_offsets, shifted_mean
from .separators.postfilter import PostFilter, apply_postfilter
from .separators.separator import check_prompts, paired
from .text.anchors import PromptAnchors, apply_anchors
from .timing import real_time_factor

OPSET = 17
FORMAT_VERSION = 1
MANIFEST = "onnx.json"


# ---------------------------------------------------------------------------------------------
# Export wrappers: each one graph with tensor inputs and outputs
# ---------------------------------------------------------------------------------------------
class _Encoder(nn.Module):
    def __init__(self, codec):
        super().__init__()
        self.codec = codec

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, 1, T) -> latent (B, D, F)."""
        return self.codec.encode(wav)


class _Decoder(_Encoder):
    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """latent (B, D, F) -> wav (B, 1, F * hop), to crop to the input length."""
        return self.codec.decode(latent)


class _Quantize(_Encoder):
    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """latent (B, D, F) -> codes (B, N, F) with every codebook."""
        return self.codec.quantize(latent, self.codec.n_codebooks)


class _Dequantize(_Encoder):
    def forward(self, codes: torch.Tensor, n_quantizers: torch.Tensor) -> torch.Tensor:
        """codes (B, N, F), n_quantizers () -> latent (B, D, F); codebooks >= n are ignored."""
        from .codecs.mica import decompress

        stages = self.codec.quantizer.stages
        h = sum(s.decode(codes[:, i]) * (n_quantizers > i).float() for i, s in enumerate(stages))
        return decompress(self.codec.synthesis(h), self.codec.config.compress_power)


class _Masker(nn.Module):
    def __init__(self, separator, cond: torch.Tensor | None = None):
        super().__init__()
        self.separator = separator
        self.register_buffer("cond", cond)
        self.parts = separator.refiner is not None

    def forward(self, latent: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """latent (B, D, F), cond (P, E) (or the baked prompts) -> target (P, B, D, F); with a
        learned post-filter, every part `Separator.split_latent` gives, (K, P, B, D, F)."""
        cond = self.cond if cond is None else cond
        if not self.parts:
            return self.separator.mask_latent(latent, cond)
        parts = self.separator.split_latent(*paired(latent, cond))
        return parts.reshape(parts.shape[0], cond.shape[0], *latent.shape)


def _export(module: nn.Module, args: tuple, path: Path, inputs: dict, outputs: dict) -> None:
    """torch.onnx.export with named inputs/outputs -> {axis: name} dynamic axes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer notes
        torch.onnx.export(module.eval(), args, str(path), input_names=list(inputs),
                          output_names=list(outputs), dynamic_axes={**inputs, **outputs},
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------
def _check_exportable(separator) -> None:
    from .codecs.mica import MicaCodec

    kind = getattr(separator, "checkpoint_kind", None)
    if kind != "codecsep":
        raise CodecSepError(f"ONNX export supports CodecSep separators, not a {kind!r} model")
    if not isinstance(separator.codec, MicaCodec):
        raise CodecSepError(f"ONNX export supports the Mica codec; this separator uses "
                            f"{separator.codec.codec_id}")


@torch.no_grad()
def _write_graphs(separator, tmp: Path, cond: torch.Tensor | None, embedding_input: bool) -> dict:
    """Export every graph into `tmp`; returns {role: file name}."""
    codec, hop = separator.codec, separator.codec.hop_length
    wav = torch.randn(2, 1, 7 * hop + 5) * 0.1
    latent = codec.encode(wav)
    f, t, p = {0: "batch", 2: "frames"}, {0: "batch", 2: "samples"}, {0: "prompts"}
    files = {"encoder": "encoder.onnx", "decoder": "decoder.onnx",
             "quantize": "quantize.onnx", "dequantize": "dequantize.onnx"}
    _export(_Encoder(codec), (wav,), tmp / files["encoder"], {"wav": t}, {"latent": f})
    _export(_Decoder(codec), (latent,), tmp / files["decoder"], {"latent": f}, {"wav": t})
    _export(_Quantize(codec), (latent,), tmp / files["quantize"], {"latent": f}, {"codes": f})
    codes = codec.quantize(latent, codec.n_codebooks)
    _export(_Dequantize(codec), (codes, torch.tensor(codec.n_codebooks)), tmp / files["dequantize"],
            {"codes": f, "n_quantizers": {}}, {"latent": f})
    target = ({"parts": {1: "prompts", 2: "batch", 4: "frames"}} if separator.refiner is not None
              else {"target": {0: "prompts", 1: "batch", 3: "frames"}})
    if embedding_input:
        files["masker"] = "masker.onnx"
        example = torch.randn(3, separator.config.masker.cond_dim)
        _export(_Masker(separator), (latent, example), tmp / files["masker"],
                {"latent": f, "cond": p}, target)
    if cond is not None:
        files["masker_prompts"] = "masker_prompts.onnx"
        _export(_Masker(separator, cond), (latent,), tmp / files["masker_prompts"],
                {"latent": f}, target)
    net = separator.refiner
    if net is not None:
        files["postnet"] = "postnet.onnx"
        bins, n = separator.postfilter.n_fft // 2 + 1, {0: "n", 2: "frames"}
        logs = tuple(torch.randn(2, bins, 5) for _ in range(3))
        _export(net, (*logs, torch.randn(net.n_members, 2, bins, 5)), tmp / files["postnet"],
                {"log_t": n, "log_r": n, "log_x": n, "member_logits": {1: "n", 3: "frames"}},
                {"logit_correction": n})
    return files


def _manifest(separator, files: dict, prompts: list[str], source) -> dict:
    codec, cfg, pf = separator.codec, separator.config, separator.postfilter_in_use
    return {
        "format_version": FORMAT_VERSION, "opset": OPSET, "files": files,
        "codec_id": codec.codec_id, "latent_space": codec.latent_space_id(),
        "sample_rate": codec.sample_rate, "hop_length": codec.hop_length,
        "latent_dim": codec.latent_dim, "n_codebooks": codec.n_codebooks,
        "codebook_size": codec.codebook_size, "text_encoder": cfg.text_encoder,
        "cond_dim": cfg.masker.cond_dim, "prompts": prompts,
        "window_seconds": cfg.window_seconds, "overlap_seconds": cfg.overlap_seconds,
        "shifts": len(separator.shift_offsets), "anchors": asdict(separator.anchors),
        "members": list(separator.members),  # the maskers in masker*.onnx (for both paths)
        "combine": cfg.combine,  # how their masks became one (inside the graph)
        # run outside the graphs, on the waveforms (a learned refinement: "net", postnet.onnx)
        "postfilter": {"n_fft": pf.n_fft, "power": pf.power,
                       **({"net": pf.net, "pools": pf.pools} if pf.net else {}),
                       **({"misi": pf.misi} if pf.misi else {})},
        "source": {"model": str(source) if source else None,
                   "sha256": getattr(separator, "meta", {}).get("sha256")},
    }


def export_onnx(separator, out_dir, prompts=(), embedding_input: bool = True,
                overwrite: bool = False, source=None) -> Path:
    """Export `separator` to ONNX graphs in `out_dir` (see the module docstring).

    `prompts` are embedded now and baked into `masker_prompts.onnx`; `embedding_input` also
    writes `masker.onnx`, which takes any (P, E) embedding. The folder is written atomically.
    """
    require("onnx", "onnx")
    _check_exportable(separator)
    prompts = check_prompts(prompts) if prompts else []
    if not prompts and not embedding_input:
        raise CodecSepError("nothing to export the masker for: give prompts or keep the "
                            "embedding input")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CodecSepError(f"{out_dir}: exists and is not a folder; choose another -o")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise CodecSepError(f"{out_dir} exists and is not empty (use --overwrite to replace it)")
    separator = separator.eval()
    cond = separator.embed(prompts).clone() if prompts else None  # a plain (not inference) tensor
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    tmp.chmod(0o755)  # mkdtemp makes it private; the export is an ordinary folder
    try:
        files = _write_graphs(separator, tmp, cond, embedding_input)
        manifest = _manifest(separator, files, prompts, source)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


# ---------------------------------------------------------------------------------------------
# Inference with onnxruntime
# ---------------------------------------------------------------------------------------------
class _OnnxPostNet:
    """postnet.onnx with `postfilter.PostNet`'s call, for `apply_postfilter`."""

    def __init__(self, separator: OnnxSeparator, n_members: int):
        self.separator, self.n_members = separator, n_members

    def __call__(self, log_t, log_r, log_x, member_logits) -> torch.Tensor:
        return self.separator._run("postnet", log_t=log_t, log_r=log_r, log_x=log_x,
                                   member_logits=member_logits)


class OnnxSeparator:
    """The exported separator on onnxruntime; same `separate` / `separate_codes` contract as
    `Separator` (torch tensors in and out), prompts or embeddings as the query."""

    def __init__(self, directory, threads: int = 1, text_encoder=None):
        ort = require("onnxruntime", "onnx")
        self.directory = Path(directory)
        if not (self.directory / MANIFEST).is_file():
            raise CodecSepError(f"{self.directory}: not an ONNX export (missing {MANIFEST})")
        m = self.manifest = json.loads((self.directory / MANIFEST).read_text())
        if m.get("format_version") != FORMAT_VERSION:
            raise CodecSepError(f"{self.directory}: export format {m.get('format_version')}, "
                                f"this version reads {FORMAT_VERSION}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        self.sessions = {role: ort.InferenceSession(str(self.directory / name), opts,
                                                    providers=["CPUExecutionProvider"])
                         for role, name in m["files"].items()}
        self.sample_rate, self.hop_length = m["sample_rate"], m["hop_length"]
        self.prompts = list(m["prompts"])
        self._text = text_encoder
        self.anchors = config_from_dict(PromptAnchors, m.get("anchors", {}))
        self._anchor_cache: dict = {}
        self.shift_offsets = shift_offsets(m.get("shifts", 1), self.hop_length)
        self.postfilter = PostFilter.parse(m.get("postfilter", {}))
        self.refiner = _OnnxPostNet(self, len(m["members"])) if self.postfilter.net else None

    def _run(self, role: str, **feeds) -> torch.Tensor:
        if role not in self.sessions:
            raise CodecSepError(f"{self.directory}: this export has no {role} graph")
        feeds = {k: np.ascontiguousarray(v.numpy() if torch.is_tensor(v) else v)
                 for k, v in feeds.items()}
        return torch.from_numpy(self.sessions[role].run(None, feeds)[0])

    def embed(self, prompts) -> torch.Tensor:
        """(P, E) text embeddings, from the text encoder the model was trained with."""
        if self._text is None:
            from .text.base import get_text_encoder

            self._text = get_text_encoder(self.manifest["text_encoder"])
        emb = self._text.embed(check_prompts(prompts)).float()
        return apply_anchors(emb, self.anchors, self._text.embed, self._anchor_cache)

    def mask_latent(self, latent: torch.Tensor, prompts=None, cond=None) -> torch.Tensor:
        """latent (B, D, F) -> target latents (P, B, D, F), for prompts or embeddings (P, E)."""
        return self.split_latent(latent, prompts, cond)[0]

    def split_latent(self, latent: torch.Tensor, prompts=None, cond=None) -> torch.Tensor:
        """latent (B, D, F) -> (K, P, B, D, F): target and residual latents (and, with a learned
        post-filter, each member's target), as `Separator.split_latent`."""
        out = self._masker(latent, prompts, cond)
        return out if self.refiner is not None else torch.stack([out, latent.unsqueeze(0) - out])

    def _masker(self, latent: torch.Tensor, prompts=None, cond=None) -> torch.Tensor:
        """What the masker graph gives: target (P, B, D, F), or parts (K, P, B, D, F)."""
        if cond is None:
            prompts = check_prompts(prompts)
            if "masker_prompts" in self.sessions and set(prompts) <= set(self.prompts):
                rows = [self.prompts.index(p) for p in prompts]
                out = self._run("masker_prompts", latent=latent)
                return out[:, rows] if self.refiner is not None else out[rows]
            if "masker" not in self.sessions:
                raise CodecSepError(f"this export only knows the prompts {self.prompts}")
            cond = self.embed(prompts)
        if cond.shape[-1] != self.manifest["cond_dim"]:
            raise CodecSepError(f"embeddings must be {self.manifest['cond_dim']}-d, "
                                f"got {cond.shape[-1]}")
        return self._run("masker", latent=latent, cond=cond.float())

    def separate(self, audio, prompts=None, cond=None) -> dict:
        """audio (T,) or (C, T) -> {"target", "residual"}: (P, C, T) each, as `Separator`."""
        wav = torch.as_tensor(np.asarray(audio, dtype=np.float32))
        wav = wav.unsqueeze(0) if wav.ndim == 1 else wav
        if wav.ndim != 2 or wav.shape[-1] == 0:
            raise CodecSepError(f"audio must be (T,) or (C, T) with T > 0, got {tuple(wav.shape)}")
        window = int(self.manifest["window_seconds"] * self.sample_rate)
        overlap = int(self.manifest["overlap_seconds"] * self.sample_rate)

        def frames(chunk: torch.Tensor) -> torch.Tensor:  # (C, w) -> (K, P, C, w)
            z = self._run("encoder", wav=chunk.unsqueeze(1))
            parts = self.split_latent(z, prompts, cond)
            y = self._run("decoder", latent=parts.reshape(-1, *z.shape[1:]))[..., : chunk.shape[-1]]
            return y.reshape(*parts.shape[:3], -1)

        def refine(chunk: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
            if self.refiner is None:
                return apply_postfilter(chunk, parts, self.postfilter)
            return apply_postfilter(chunk, parts[:2], self.postfilter, net=self.refiner,
                                    members=parts[2:])

        out = overlap_add(wav, window, overlap, lambda chunk: refine(
            chunk, shifted_mean(chunk, self.shift_offsets, frames)))
        return {"target": out[0], "residual": out[1]}

    def quantize(self, latent: torch.Tensor, n_quantizers: int | None = None) -> torch.Tensor:
        """latent (B, D, F) -> codes (B, n, F)."""
        return self._run("quantize", latent=latent)[:, : n_quantizers or None]

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, n, F), n <= n_codebooks -> latent (B, D, F)."""
        n, full = codes.shape[1], self.manifest["n_codebooks"]
        if not 1 <= n <= full:
            raise CodecSepError(f"codes have {n} codebooks; this codec has 1..{full}")
        padded = torch.zeros(codes.shape[0], full, codes.shape[2], dtype=torch.int64)
        padded[:, :n] = codes
        return self._run("dequantize", codes=padded, n_quantizers=np.array(n, dtype=np.int64))

    def separate_codes(self, codes: torch.Tensor, prompts=None, cond=None) -> dict:
        """codes (1, N, F) -> {"target", "residual"}: codes (P, N, F), in one window."""
        codes = codes if codes.ndim == 3 else codes.unsqueeze(0)
        latent = self.dequantize(codes)
        target = self.mask_latent(latent, prompts, cond)[:, 0]
        n = codes.shape[1]
        return {"target": self.quantize(target, n), "residual": self.quantize(latent - target, n)}


# ---------------------------------------------------------------------------------------------
# Real-time factor
# ---------------------------------------------------------------------------------------------
def measure_rtf(separator, onnx_dir, seconds: float = 10.0, repeats: int = 3,
                threads: int = 1) -> dict:
    """Processing time / audio duration of waveform separation (one prompt, embedding given),
    PyTorch vs onnxruntime, both on `threads` threads, median of `repeats` runs (`timing`);
    lower is faster (< 1: real time)."""
    onnx = OnnxSeparator(onnx_dir, threads=threads)
    gen = torch.Generator().manual_seed(0)
    audio = torch.randn(1, int(seconds * separator.sample_rate), generator=gen) * 0.1
    cond = torch.randn(1, separator.config.masker.cond_dim, generator=gen)
    torch_rtf = real_time_factor(lambda: separator.separate(audio, ["x"], cond=cond), seconds,
                                 threads, repeats)["wall"]
    onnx_rtf = real_time_factor(lambda: onnx.separate(audio, cond=cond), seconds, threads,
                                repeats)["wall"]
    return {"seconds": seconds, "threads": threads, "torch_rtf": torch_rtf, "onnx_rtf": onnx_rtf}


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    from .separators.api import get_separator

    separator = get_separator(args.model)
    if args.members is not None:
        separator.members = args.members
    out = export_onnx(separator, args.out, prompts=args.prompt or (),
                      embedding_input=not args.prompts_only, overwrite=args.overwrite,
                      source=args.model or "default")
    files = json.loads((out / MANIFEST).read_text())["files"]
    print(f"exported {', '.join(files.values())} to {out}")
    if args.rtf:
        r = measure_rtf(separator, out, seconds=args.rtf_seconds, threads=1)
        print(f"real-time factor on 1 thread ({r['seconds']:.0f} s of audio): "
              f"PyTorch {r['torch_rtf']:.4f}, ONNX Runtime {r['onnx_rtf']:.4f}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("export", help="export a separator to ONNX (encoder, masker, decoder...)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", choices=["onnx"], default="onnx",
                   help="ONNX (the only format for now; the flag keeps commands stable)")
    p.add_argument("--model", default=None, help="separator checkpoint dir (default: shipped)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--prompt", action="append",
                   help="bake this prompt's embedding into masker_prompts.onnx (repeatable)")
    p.add_argument("--prompts-only", action="store_true",
                   help="skip masker.onnx (the masker taking an embedding input)")
    p.add_argument("--members", type=members_arg, metavar="K[,K]",
                   help="of a checkpoint that combines several maskers, export only these "
                        "(1-based; default: the checkpoint's members). One masker graph serves waveforms and code "
                        "streams: --members 3 is the shipped default's code-stream path")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--rtf", action="store_true",
                   help="then measure the real-time factor of ONNX vs PyTorch on one thread")
    p.add_argument("--rtf-seconds", type=positive_float, default=10.0,
                   help="audio length for --rtf")
    p.set_defaults(func=run)
