"""Time the shipped post-filter refinement (`postfilter.PostNet`) on one 4-s window, one thread:
PyTorch as it runs (`fast`: cumulative sums, channels-last products), PyTorch by its definition
(`fast=False`: average pooling, 1x1 convolutions), and ONNX Runtime on the graph an export traces
(the definition).

    python scripts/postnet_speed.py [--frames 17] [--repeats 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from codecsep.demo import DEFAULT_MODEL
from codecsep.separators.separator import Separator


def timed(fn, repeats: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=17, help="STFT frames (17: 4 s at hop 1024)")
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(1)
    sep = Separator.load(DEFAULT_MODEL)
    net, bins = sep.masker.postnet.eval(), sep.postfilter.n_fft // 2 + 1
    g = torch.Generator().manual_seed(0)
    args = tuple(torch.randn(1, bins, a.frames, generator=g) for _ in range(3))
    args += (torch.randn(net.n_members, 1, bins, a.frames, generator=g),)
    with torch.no_grad():
        fast, ref = net(*args), net(*args, fast=False)
        print(f"largest difference, as it runs vs by definition: {(fast - ref).abs().max():.1e}")
        print(f"PyTorch, as it runs:    {timed(lambda: net(*args), a.repeats):6.1f} ms")
        slow = timed(lambda: net(*args, fast=False), a.repeats)
        print(f"PyTorch, by definition: {slow:6.1f} ms")
    import onnxruntime as ort

    from codecsep.export import export_onnx
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(sep, Path(tmp), prompts=["dog"])
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        s = ort.InferenceSession(str(Path(tmp) / "postnet.onnx"), so)
        feed = {i.name: v.numpy() for i, v in zip(s.get_inputs(), args)}
        out = s.run(None, feed)[0]
        print(f"ONNX Runtime (export):  {timed(lambda: s.run(None, feed), a.repeats):6.1f} ms "
              f"(largest difference {np.abs(out - ref.numpy()).max():.1e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
