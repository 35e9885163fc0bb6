"""The names of the recall figures, in one place (light: no numpy, no torch, so the command line
and the app can lay out tables without loading the model code)."""

KS = (1, 5, 10)
DIRECTIONS = (("t2i", "text->image"), ("i2t", "image->text"))
# Every recall figure's key, in the order tables show them: t2i_r1 ... i2t_r10.
RECALL_KEYS = tuple(f"{d}_r{k}" for d, _ in DIRECTIONS for k in KS)
