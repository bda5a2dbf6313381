# The CPU demo behind `make demo`: every encoding trained on the offline demo corpus at 64 bytes
# (configs/demo/base.py), then evaluated at 64 ... 2048 (1x to 32x the training length).
#
# Cost, measured on 2 CPU cores: 8 runs x (~45-60 s training + ~5-10 s evaluation), two runs at a
# time with one thread each (a 0.1M-parameter model gains little from a second thread, two
# processes use both cores fully): ~5-8 minutes for the whole sweep.
name = "demo"
out_dir = "out/sweeps/demo"
_encodings = ["alibi", "t5", "shaw", "rope", "damped_rope", "nope", "sinusoidal", "learned"]
runs = [dict(name=e, config=f"configs/demo/{e}.py") for e in _encodings]
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
