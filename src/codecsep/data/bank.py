"""An in-memory bank of training clips: the whole split decoded once, cropped at random.

Training on 2 CPU cores is data-bound if every step decodes files; the corpus train split
(a few hours at 16 kHz as int16) fits in RAM, so it is decoded once with a progress bar.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from .manifest import Clip


class ClipBank:
    def __init__(self, clips: list[Clip], sample_rate: int = 16000, min_seconds: float = 0.3):
        self.clips, self.audio = [], []
        for clip in tqdm(clips, desc="loading clips", unit="clip", leave=False):
            wav, sr = sf.read(clip.path, dtype="int16", always_2d=True)
            if sr != sample_rate:
                raise ValueError(f"{clip.path}: expected {sample_rate} Hz, got {sr}")
            wav = wav.mean(1).astype(np.int16) if wav.shape[1] > 1 else wav[:, 0]
            if len(wav) < min_seconds * sample_rate:
                continue
            self.clips.append(clip)
            self.audio.append(wav)
        self.by_label: dict[str, list[int]] = defaultdict(list)
        for i, clip in enumerate(self.clips):
            self.by_label[clip.label].append(i)
        self.labels = sorted(self.by_label)

    def __len__(self) -> int:
        return len(self.clips)

    def crop(self, index: int, length: int, rng: np.random.Generator, tries: int = 4) -> np.ndarray:
        """A random `length`-sample crop of clip `index` (float32), avoiding near-silent crops;
        short clips are placed at a random offset in zeros."""
        wav = self.audio[index]
        out = np.zeros(length, dtype=np.float32)
        if len(wav) <= length:
            start = rng.integers(0, length - len(wav) + 1)
            out[start : start + len(wav)] = wav / 32768.0
            return out
        best, best_energy = None, -1.0
        for _ in range(tries):
            s = rng.integers(0, len(wav) - length + 1)
            seg = wav[s : s + length].astype(np.float32) / 32768.0
            energy = float(np.mean(seg**2))
            if energy > best_energy:
                best, best_energy = seg, energy
            if energy > 1e-4:
                break
        return best

    def random_batch(self, batch: int, length: int, rng: np.random.Generator) -> torch.Tensor:
        """(B, 1, length) random crops, class-balanced, peak-normalised to a random level."""
        out = np.zeros((batch, 1, length), dtype=np.float32)
        for b in range(batch):
            label = self.labels[rng.integers(len(self.labels))]
            seg = self.crop(self.by_label[label][rng.integers(len(self.by_label[label]))], length, rng)
            peak = np.abs(seg).max()
            if peak > 0:
                seg = seg / peak * 10 ** (rng.uniform(-25, -1) / 20)
            out[b, 0] = seg
        return torch.from_numpy(out)
