# exploration: a second masking pass over the first pass's target latent (re-masking), with the
# maskers of `second` (1-based, e.g. "1,2" or "2"): target = m2(t1) * t1, t1 = m1(z) * z.
# usage: python remask_wrapper.py SECOND eval --model ... (the rest as `codecsep eval`)
import sys

import codecsep.separators.separator as sp

second = tuple(int(i) for i in sys.argv[1].split(","))
first_pass = sp.Separator.mask_latent


def mask_latent(self, latent, cond, members=None):
    t1 = first_pass(self, latent, cond, members)  # (P, B, D, F)
    p, b = t1.shape[:2]
    flat = t1.reshape(p * b, *t1.shape[2:])
    c = cond.unsqueeze(1).expand(p, b, cond.shape[1]).reshape(p * b, -1)
    return (self.mask(flat, c, second) * flat).reshape(t1.shape)


sp.Separator.mask_latent = mask_latent
from codecsep.cli import main  # noqa: E402

sys.exit(main(sys.argv[2:]))
