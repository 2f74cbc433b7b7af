# MACs per second of the default's code-stream masker (member 2) counted on one window of each length:
# why a 10-s code stream cannot fit 0.5 GMACs/s (results/experiments/README.md, session 16).
# usage: python results/experiments/session16/window_costs.py
import torch

from codecsep.flops import count_macs
from codecsep.separators.separator import Separator

torch.set_num_threads(1)
sep = Separator.load().eval()
cond = torch.zeros(1, sep.text_dim)
for seconds in (1, 2, 3, 4, 10):
    z = sep.codec.encode(0.1 * torch.randn(1, 1, 16000 * seconds))
    macs = count_macs(sep.mask, z, cond, sep.code_members)
    print(f"{seconds:>2} s window: {macs / seconds / 1e9:.4f} GMACs/s (masker of code_members {sep.code_members})")
