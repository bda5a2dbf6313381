# The CPU demo behind `make demo`: every encoding, plus two generators (Jordan blocks; ALiBi as a
# nilpotent block), trained on the offline demo corpus at 64 bytes (configs/demo/base.py), then
# evaluated at 64 ... 2048 (1x to 32x); RoPE also with four context-extension methods. Two runs
# at a time with one thread each: ~3.5 minutes on 2 idle CPU cores.
name = "demo"
out_dir = "out/sweeps/demo"
_encodings = ["alibi", "t5", "shaw", "rope", "damped_rope", "nope", "sinusoidal", "learned"]
# RoPE also evaluated with context extension (no retraining): rows "rope + yarn x8", ... dashed
_extend = [dict(rope_scaling=s, rope_factor=8) for s in ("linear", "dynamic", "yarn", "llama3")]
runs = [
    dict(name=e, config=f"configs/demo/{e}.py", eval_variants=_extend if e == "rope" else [])
    for e in _encodings
]
# the generator family: a Jordan-block generator, and ALiBi rebuilt as a nilpotent generator
runs += [
    dict(name=g, config=f"configs/demo/{g}.py") for g in ("generator_jordan", "generator_alibi")
]
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
