# Time from the data on the CPU demo (`make demo-time`): configs/sweeps/time.py's runs, trained
# and evaluated as configs/sweeps/demo.py. NoPE reads no positions, so the learned table takes
# its place for randomized positions (its table covers 8 x 64 = 512 positions: evaluated to 8x).
name = "demo_time"
out_dir = "out/sweeps/demo_time"
_learned = dict(time="learned")
_random = dict(train_positions="randomized")
_clocks = [("", {}), ("_learned_time", _learned)]
runs = [dict(name=e + suffix, config=f"configs/demo/{e}.py", overrides=o)
        for e in ("rope", "damped_rope", "generator") for suffix, o in _clocks]  # fmt: skip
runs += [dict(name=e, config=f"configs/demo/{e}.py") for e in ("alibi", "fox", "nope", "cope")]
runs += [dict(name=f"{e}_randomized", config=f"configs/demo/{e}.py", overrides=_random)
         for e in ("rope", "learned")]  # fmt: skip
runs += [dict(name="learned", config="configs/demo/learned.py")]
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
