# The rest of the field on the CPU demo (`make demo-field`): every encoding beyond the mission's
# seven, trained and evaluated exactly as in configs/sweeps/demo.py (64 bytes, evaluated at 1x-32x),
# next to four references from that demo (alibi, t5, rope, nope) so that this sweep's table and
# plot stand on their own.
#
# Cost, measured on 2 idle CPU cores from a fresh clone: 4 min 51 s for the first 14 runs, about
# 6 minutes with cope (README, "The rest of the field").
name = "demo_field"
out_dir = "out/sweeps/demo_field"
_field = ["kerple", "sandwich", "fire", "xl", "tener", "huang", "da", "xpos", "p_rope", "axial",
          "cope"]  # fmt: skip
runs = [dict(name=e, config=f"configs/demo/{e}.py") for e in _field]
runs += [dict(name=e, config=f"configs/demo/{e}.py") for e in ("alibi", "t5", "rope", "nope")]
seeds = [1337]
common = dict(device="cpu")
eval_args = dict(
    lengths=[64, 128, 256, 512, 1024, 2048],
    mode="nonoverlapping",
    split="val",
    max_tokens=32768,  # the first half of the val split, the same bytes at every length
    device="cpu",
)
jobs = 2
threads = 1
