# exploration: the shipped mask mean with member weights (w, 1-w) instead of equal weights
import sys
import codecsep.separators.masker as mk
w = float(sys.argv[1])
def forward(self, latent, cond):
    ms = [m(latent, cond) for m in self.used]
    return w * ms[0] + (1 - w) * ms[1] if len(ms) == 2 else sum(ms) / len(ms)
mk.MaskMean.forward = forward
from codecsep.cli import main
sys.exit(main(sys.argv[2:]))
