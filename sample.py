"""
Generate text from a trained checkpoint, with a KV cache, also past block_size
(docs/evaluation.md#sampling).

    python sample.py --out_dir=out/demo/alibi
    python sample.py --out_dir=out/demo/alibi --start="The function" --num_samples=3 --top_k=50
    python sample.py --out_dir=out/wikitext103/rope --start=FILE:prompt.txt --max_new_tokens=2000
"""

import os
import sys
from pathlib import Path

import torch

from checkpoint import ROPE_FACTOR, eval_precision, load_model
from configurator import UserError, check_at_least, parse_args, run_cli
from data.prepare import get_tokenizer
from runtime import autocast, resolve_device

DEFAULTS = dict(
    out_dir="",  # the run directory holding ckpt.pt (required)
    start="\n",  # the prompt, or FILE:path to read it from a file
    num_samples=1,  # how many samples to draw
    max_new_tokens=500,  # tokens generated per sample (may exceed block_size)
    temperature=0.8,  # < 1 sharper, > 1 more random, 0 greedy
    top_k=200,  # keep only the top_k most likely tokens; 0 keeps all
    seed=1337,
    device="auto",  # "auto" (cuda if available, else cpu), "cpu", "cuda", ...
    encoding_kwargs={},  # change encoding options at generation time
    rope_scaling="",  # RoPE context extension: linear | dynamic | yarn | llama3 (rope, damped_rope)
    rope_factor=ROPE_FACTOR,  # its factor (how many times the training length it aims at)
    dtype="",  # "": the checkpoint's (its dtype and TF32, as it trained); or float32 | bfloat16 ...
)


def main(argv=None):
    cfg = parse_args(sys.argv[1:] if argv is None else argv, DEFAULTS)
    if not cfg["out_dir"]:
        raise UserError("pass --out_dir=DIR, the run directory that holds ckpt.pt")
    check_at_least(cfg, dict(num_samples=1, max_new_tokens=0, temperature=0, top_k=0))
    device = resolve_device(cfg["device"])

    start = cfg["start"]
    if start.startswith("FILE:"):
        path = start[len("FILE:") :]
        if not os.path.isfile(path):
            raise UserError(f"--start=FILE:{path}: no such file")
        try:
            start = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"--start=FILE:{path}: not UTF-8 text ({e.reason})") from e

    model, ckpt = load_model(cfg["out_dir"], device, cfg)  # its encoding_kwargs, rope_scaling ...
    ctx = autocast(device, eval_precision(ckpt, device, cfg["dtype"])[0])
    tok = get_tokenizer(ckpt["tokenizer"])
    ids = tok.encode(start)
    if not ids:
        raise UserError("--start encodes to no tokens: give some text (the default is '\\n')")
    if model.max_len is not None and len(ids) + cfg["max_new_tokens"] > model.max_len:
        note = f"positions up to {model.max_len}; generation sees only the last that many tokens"
        print(f"note: encoding {model.config.encoding} has {note}", file=sys.stderr)

    torch.manual_seed(cfg["seed"])  # every device's generator
    x = torch.tensor(ids, dtype=torch.long, device=device)[None, ...]
    for i in range(cfg["num_samples"]):
        with ctx:
            y = model.generate(x, cfg["max_new_tokens"], cfg["temperature"], cfg["top_k"] or None)
        if i:
            print("---------------")
        # the embedding is padded past the tokenizer's vocabulary (a multiple of 64, for speed);
        # a padding id is essentially never sampled, and has no text if it is
        print(tok.decode([t for t in y[0].tolist() if t < tok.vocab_size]))


if __name__ == "__main__":
    run_cli(main)
