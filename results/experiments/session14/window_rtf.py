"""RTF of the shipped default on 10 s (and 60 s) with 10-s vs 4-s windows, one thread, median of 5, same machine."""
import torch
from dataclasses import replace
from codecsep.bench import median_rtf, _probe_input
from codecsep.separators.separator import Separator
torch.set_num_threads(1)
sep = Separator.load().eval(); cond = torch.zeros(1, sep.text_dim)
for seconds in (10.0, 60.0):
    wav = _probe_input(16000, seconds)[0]
    for w in (10.0, 4.0):
        sep.config = replace(sep.config, window_seconds=w)
        rtf = median_rtf(lambda: sep.separate(wav, ["x"], cond=cond), seconds, 1, 5)
        codes = sep.codec.quantize(sep.codec.encode(wav[None]))
        rtf_c = median_rtf(lambda: sep.separate_codes(codes, ["x"], cond=cond), seconds, 1, 5)
        print(f"{seconds:g} s input, {w:g}-s windows: RTF waveform {rtf:.4f}, codes {rtf_c:.4f}")
