"""One training loop for every model: resumable, clipped, logged, plotted, optionally DDP.

A recipe supplies the model, a batch iterator, a `step_fn(model, batch) -> dict of scalar
tensors` (key "loss" is optimised) and an `export_fn(model, step)` that writes the shippable
checkpoint. The loop owns everything else: optimizer, resumption from `train_state.pt`,
gradient clipping, CSV logs, the loss-curve PNG and, under `torchrun`, gloo data parallelism.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm


@dataclass(frozen=True)
class LoopConfig:
    steps: int = 10000
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup: int = 200
    grad_clip: float = 10.0
    log_every: int = 25
    ckpt_every: int = 250
    threads: int = 0  # 0 = leave torch's default
    stop_at: int = 0  # pause here (checkpointed) without changing the LR schedule; 0 = run to `steps`
    # the step the LR schedule (warmup, then cosine to `steps`) starts from: a continuation of a
    # trained checkpoint (whose step carries over) can run a fresh cycle; 0 = the run's first step
    schedule_start: int = 0


def export_meta(out_dir, step: int, command: str, **fields) -> dict:
    """What every recipe records in an exported checkpoint's meta.json: the step, the command
    that ran last, every command that trained the run (history.json, with its start step) and
    the recipe's own fields (configs, manifest...)."""
    path = Path(out_dir) / "history.json"
    history = json.loads(path.read_text()) if path.is_file() else []
    return {"step": step, "trained_by": command, "history": history, **fields}


def distributed_env() -> tuple[int, int]:
    """(rank, world size) under torchrun; (0, 1) otherwise. Initialises gloo once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def lr_at(step: int, cfg: LoopConfig) -> float:
    """Linear warmup then cosine decay to 10% of the peak, over steps `schedule_start`..`steps`."""
    step, steps = max(0, step - cfg.schedule_start), cfg.steps - cfg.schedule_start
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, steps - cfg.warmup))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def csv_header(path: Path) -> list[str]:
    """The column names on a CSV file's first line."""
    with open(path, newline="") as f:
        return next(csv.reader(f), [])


class Trainer:
    def __init__(self, model: nn.Module, batches: Iterator, step_fn: Callable,
                 export_fn: Callable, out_dir: str | os.PathLike, cfg: LoopConfig,
                 params: list | None = None):
        self.rank, self.world = distributed_env()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.model, self.batches, self.step_fn, self.export_fn = model, batches, step_fn, export_fn
        self.cfg, self.out = cfg, Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        trainable = params if params is not None else [p for p in model.parameters() if p.requires_grad]
        # `params` may also be param groups ({"params": [...], "lr_mult": x}): a group's LR is the
        # schedule's times its `lr_mult` (new layers grown onto a trained model learn faster)
        groups = trainable if trainable and isinstance(trainable[0], dict) else [{"params": trainable}]
        self.params = [p for g in groups for p in g["params"]]
        self.opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.ddp = None
        if self.world > 1:
            self.ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
        self.step = 0
        self._log_columns: list[str] | None = None  # log.csv's header, read once (see _log)
        self.history: list[dict] = []  # every command that trained this run, with its start step
        self._resume()
        self.history.append({"start_step": self.step, "command": " ".join(sys.argv)})

    @property
    def state_path(self) -> Path:
        return self.out / "train_state.pt"

    def _resume(self) -> None:
        if self.state_path.is_file():
            state = torch.load(self.state_path, map_location="cpu", weights_only=False)
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["opt"])
            self.step = state["step"]
            self.history = state.get("history", [])
            if self.rank == 0:
                print(f"resumed from {self.state_path} at step {self.step}", file=sys.stderr)

    def _save(self) -> None:
        if self.rank != 0:
            return
        tmp = self.state_path.with_suffix(".tmp")
        torch.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                    "step": self.step, "history": self.history}, tmp)
        os.replace(tmp, self.state_path)
        (self.out / "history.json").write_text(json.dumps(self.history, indent=1))
        self.model.eval()
        self.export_fn(self.model, self.step)
        self.model.train()
        plot_log(self.out / "log.csv", self.out / "loss.png")

    def _log(self, row: dict) -> None:
        if self.rank != 0:
            return
        path = self.out / "log.csv"
        new = not path.exists() or path.stat().st_size == 0
        if self._log_columns is None:  # a resumed run writes under the header that is there
            self._log_columns = list(row) if new else csv_header(path)
            dropped = [k for k in row if k not in self._log_columns]
            if dropped:  # it logs other terms than the run it resumes
                warnings.warn(f"{path}: its header has no column for {dropped}; those are not "
                              "logged (start a new --out to log them)", stacklevel=2)
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._log_columns, extrasaction="ignore", restval="")
            if new:
                w.writeheader()
            w.writerow(row)

    def run(self) -> None:
        cfg, model = self.cfg, self.ddp or self.model
        model.train()
        bar = tqdm(total=cfg.steps, initial=self.step, disable=self.rank != 0, dynamic_ncols=True)
        sums, n, t0 = {}, 0, time.time()
        end = min(cfg.steps, cfg.stop_at) if cfg.stop_at > 0 else cfg.steps
        while self.step < end:
            for g in self.opt.param_groups:
                g["lr"] = lr_at(self.step, cfg) * g.get("lr_mult", 1.0)
            losses = self.step_fn(model, next(self.batches))
            self.opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            gnorm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
            if torch.isfinite(gnorm):
                self.opt.step()
            self.step += 1
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
            n += 1
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == end:
                row = {"step": self.step, "lr": lr_at(self.step, cfg), "grad_norm": float(gnorm),
                       "sec_per_step": (time.time() - t0) / n}
                row.update({k: v / n for k, v in sums.items()})
                self._log(row)
                bar.set_postfix(loss=f"{row['loss']:.3f}")
                sums, n, t0 = {}, 0, time.time()
            if self.step % cfg.ckpt_every == 0 or self.step == end:
                self._save()
        bar.close()


def plot_log(csv_path: Path, png_path: Path) -> None:
    """Loss curves of every logged column against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not csv_path.exists():
        return
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    keys = [k for k in rows[0] if k not in ("step", "lr", "sec_per_step", "grad_norm")]
    steps = [int(r["step"]) for r in rows]
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.2 * len(keys)), sharex=True, squeeze=False)
    for ax, k in zip(axes[:, 0], keys):
        ax.plot(steps, [float(r[k]) for r in rows])
        ax.set_ylabel(k, fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
