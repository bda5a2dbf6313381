# Time from the data on the CPU demo (`make demo-time`): configs/sweeps/time.py's runs, trained
# and evaluated as configs/sweeps/demo.py. NoPE reads no positions, so the learned table takes
# its place for randomized positions (its table covers 8 x 64 = 512 positions: evaluated to 8x).
include("demo.py")  # its seeds, common, eval_args, context_args, jobs and threads
name = "demo_time"
out_dir = "out/sweeps/demo_time"
_random = dict(train_positions="randomized")
_clocks = [("", {}), ("_learned_time", dict(time="learned"))]
runs = [dict(name=e + suffix, config=f"configs/demo/{e}.py", overrides=o)
        for e in ("rope", "damped_rope", "generator") for suffix, o in _clocks]  # fmt: skip
runs += [dict(name=e, config=f"configs/demo/{e}.py") for e in ("alibi", "fox", "nope", "cope")]
runs += [dict(name=f"{e}_randomized", config=f"configs/demo/{e}.py", overrides=_random)
         for e in ("rope", "learned")]  # fmt: skip
runs += [dict(name="learned", config="configs/demo/learned.py")]
