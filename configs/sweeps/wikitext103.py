# The overnight sweep: every encoding trained on WikiText-103 at L = 512 (the ALiBi paper's
# training length), then evaluated on the whole validation split at 512 ... 16384 (1x-32x),
# nonoverlapping, as in the paper's tables. Needs `python data/prepare.py wikitext103` first.
#
#     python scripts/sweep.py configs/sweeps/wikitext103.py --dry_run    # what it will do
#     python scripts/sweep.py configs/sweeps/wikitext103.py              # one GPU, one night
#     python scripts/plot.py out/sweeps/wikitext103
#
# Estimate (FLOP arithmetic of configs/base.py, not measurements; train.py prints the real ETA):
# 2.5e17 FLOP per training run, ~34 min on an A100 at 40% MFU for the fused-attention encodings,
# up to ~2x for the bias and decay ones. The first ten runs (eight encodings and two generators):
# ~9 h on an A100 (~4 h on an H100); the rest of the field ~10 h more. Split it with --only, e.g.
# --only=kerple,sandwich,fire: a run that is done is skipped, so a rerun only fills in.
name = "wikitext103"
out_dir = "out/sweeps/wikitext103"
_encodings = ["alibi", "t5", "shaw", "rope", "damped_rope", "nope", "sinusoidal", "learned"]
# RoPE also evaluated with context extension (no retraining): rows "rope + yarn x8", ... dashed
_extend = [dict(rope_scaling=s, rope_factor=8) for s in ("linear", "dynamic", "yarn", "llama3")]
runs = [
    dict(name=e, config=f"configs/{e}.py", eval_variants=_extend if e == "rope" else [])
    for e in _encodings
]
# the generator family: a Jordan-block generator, and ALiBi rebuilt as a nilpotent generator
runs += [dict(name=g, config=f"configs/{g}.py") for g in ("generator_jordan", "generator_alibi")]
# the rest of the field (configs/sweeps/demo_field.py runs the same on the CPU demo)
_field = ["kerple", "sandwich", "fire", "xl", "tener", "huang", "da", "xpos", "p_rope", "axial",
          "cope", "fox"]  # fmt: skip
runs += [dict(name=e, config=f"configs/{e}.py") for e in _field]
seeds = [1337]
common = {}  # configs/base.py as it is; e.g. dict(max_iters=2000) for a quicker look
eval_args = dict(
    lengths=[512, 1024, 2048, 4096, 8192, 16384],
    mode="nonoverlapping",  # the sliding view: scripts/eval_lengths.py --mode=sliding afterwards
    split="val",
    max_tokens=0,  # the whole split, so that word-level perplexity is exact
)
# scripts/eval_context.py's probes (docs/context.md) after each evaluation, at ~10% of its FLOPs
# (one above: ~2.1 GFLOP x ~250k tokens = 5.2e14; FLOP arithmetic, not measured): the gain at 2x
# and 32x on the first 16448 tokens (80 targets) 4.6%, the copy probe at D = 128 ... 16384 with 2
# spans each 5.7% (16448 = 16384 + 2 spans of 32: its widest window fits). For narrower error
# bars raise max_tokens (targets) and placements, at that cost.
context_args = dict(lengths=[1024, 16384], max_tokens=16448, placements=2, probe_seeds=1)
threads = 0
