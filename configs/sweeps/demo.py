# The CPU demo behind `make demo`: eight encodings, plus two generators (Jordan blocks; ALiBi as a
# nilpotent block), trained on the offline demo corpus at 64 bytes (configs/demo/base.py), then
# evaluated at 64 ... 2048 (1x to 32x); RoPE also with four context-extension methods. Two runs
# at a time with one thread each: ~9 minutes on 2 idle CPU cores.
name = "demo"
out_dir = "out/sweeps/demo"
_encodings = ["alibi", "t5", "shaw", "rope", "damped_rope", "nope", "sinusoidal", "learned"]
_generators = ["generator_jordan", "generator_alibi"]
_extend = [dict(rope_scaling=s, rope_factor=8) for s in ("linear", "dynamic", "yarn", "llama3")]
runs = [
    dict(name=e, config=f"configs/demo/{e}.py", eval_variants=_extend if e == "rope" else [])
    for e in _encodings[:5]
    + _generators
    + _encodings[5:]  # the slow Jordan run mid-way: no lone tail
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
# scripts/eval_context.py's probes (docs/context.md): the distant-context gain at 2x, 8x and 32x
# on the first 16,384 validation bytes, the copy probe at D = 16 ... 2048 (4 placements x 3
# seeds); 3-35 s per model (the Jordan generator's explicit scores are the slowest)
context_args = dict(lengths=[128, 512, 2048], max_tokens=16384, placements=4, device="cpu")
jobs = 2
threads = 1
