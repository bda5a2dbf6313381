# The overnight sweep: every encoding trained on WikiText-103 at L = 512 (the ALiBi paper's
# training length), then evaluated on the whole validation split at 512 ... 16384 (1x-32x),
# nonoverlapping, as in the paper's tables. Needs `python data/prepare.py wikitext103` first.
#
#     python scripts/sweep.py configs/sweeps/wikitext103.py --dry_run    # what it will do
#     python scripts/sweep.py configs/sweeps/wikitext103.py              # one GPU, one night
#     python scripts/plot.py out/sweeps/wikitext103
#
# Estimate (one A100 40/80 GB; the arithmetic of configs/base.py, which every run uses):
#   training  GPT-2 small (N = 124M), 10,000 iterations x 32,768 tokens = 328M tokens.
#             FLOPs/token = 6N + 6 * n_layer * n_embd * L (attention counted causally, as
#             train.py's MFU does) = 742M + 28M = 0.77 GFLOP, so 2.5e17 FLOP per run. At 40% MFU
#             of 312 TFLOPS (bf16) = 125 TFLOPS: ~34 min. The fused-attention encodings (nope,
#             rope, sinusoidal, learned) run at about that; the bias encodings train through
#             FlexAttention on CUDA, the decays (damped_rope, the generators) through query
#             blocks with an explicit mask, up to ~2x slower (the ALiBi paper: T5 at half the
#             speed of sinusoidal; our GPU speeds are not measured). 4 x 35 min + 6 x ~60 min
#             = ~8.3 h.
#   eval      forward only: (2N + 2 * n_layer * n_embd * T) FLOPs/token, ~0.55 GFLOP at
#             T = 16k; 6 lengths x ~0.28M validation tokens = ~1 PFLOP, minutes per run even at
#             a low MFU for the explicit-mask encodings; ~15-30 min for the sweep.
#   total     the mission's ten runs (the first eight encodings and the two generators): ~9 h on
#             an A100 (~4 h on an H100), one night. The rest of the field adds ten runs, most
#             of them bias, decay or multiplicative encodings at ~60 min each: ~10 h more, a
#             second night. Split it with --only, e.g.
#                 python scripts/sweep.py configs/sweeps/wikitext103.py --only=kerple,sandwich,fire
#             (a run that is done is skipped, so rerunning the whole sweep later only fills in).
#             A second seed of the runs that matter (seeds = [1337, 1338]) takes another night;
#             ~0.3-0.9 ppl of seed noise is typical on WikiText-103.
# These are FLOP arithmetic, not measurements: the per-run ETA that train.py prints after its
# first iterations is the number to trust.
name = "wikitext103"
out_dir = "out/sweeps/wikitext103"
_encodings = ["alibi", "t5", "shaw", "rope", "damped_rope", "nope", "sinusoidal", "learned"]
# RoPE-family runs are also evaluated with context extension at evaluation time (no
# retraining): rows "rope + yarn x8", ... in the tables, dashed lines in the plot.
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
threads = 0
