# Time from the data on WikiText-103 (configs/base.py, L = 512, evaluated at 1x-32x as
# configs/sweeps/wikitext103.py): each encoding on the token index and on a learned clock
# (time="learned"), FoX next to ALiBi, CoPE next to NoPE, randomized training positions (Ruoss et
# al. 2023) next to ordinary ones. configs/sweeps/demo_time.py is the same on the CPU demo.
# Estimate: 13 GPT-2 small runs, ~35-60 min each on one A100 (a learned clock keeps an encoding
# on SDPA with a dense bias): ~10 h. Runs shared with wikitext103.py are not retrained if both
# use the same out_dir.
include("wikitext103.py")  # its seeds, common, eval_args and threads
name = "time"
out_dir = "out/sweeps/time"
_random = dict(train_positions="randomized")
_clocks = [("", {}), ("_learned_time", dict(time="learned"))]
runs = [dict(name=e + suffix, config=f"configs/{e}.py", overrides=o)
        for e in ("rope", "damped_rope", "generator") for suffix, o in _clocks]  # fmt: skip
runs += [dict(name=e, config=f"configs/{e}.py") for e in ("alibi", "fox", "nope", "cope")]
runs += [dict(name=f"{e}_randomized", config=f"configs/{e}.py", overrides=_random)
         for e in ("rope", "learned")]  # fmt: skip
runs += [dict(name="learned", config="configs/learned.py")]
context_args = None  # no probes
