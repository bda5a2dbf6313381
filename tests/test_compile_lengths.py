"""Compiled evaluation over many lengths (eval_lengths.py --compile=True): no graph per length or
per number of query blocks. Dynamo unrolls a Python loop over a symbolic count and guards on the
count, so a traced block loop would compile once per count, and past
torch._dynamo.config.cache_size_limit silently run eager."""

import pytest
import torch

from model import GPT, GPTConfig

QUERY_BLOCK = 16
# 1, 3, 5 and 8 query blocks of 16
LENGTHS = (16, 40, 72, 128)


@pytest.mark.parametrize("name", ["damped_rope", "cope"])  # decay, explicit scores (one loop)
def test_compiled_evaluation_does_not_recompile_per_block_count(name, one_thread):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=64, n_layer=1, n_head=2, n_embd=16, block_size=QUERY_BLOCK,
                    encoding=name, attn_block_size=QUERY_BLOCK)  # fmt: skip
    model = GPT(cfg).eval()
    compiled = torch.compile(model, dynamic=True, backend="aot_eager")
    graphs = []
    with torch.no_grad():
        for T in LENGTHS:
            idx = torch.randint(0, 64, (1, T), generator=torch.Generator().manual_seed(T))
            torch.testing.assert_close(compiled(idx)[0], model(idx)[0])
            graphs.append(counters["stats"]["unique_graphs"])
    # the first length may compile static graphs and the second their dynamic versions
    assert graphs[1] == graphs[-1], f"graphs compiled after each of {LENGTHS}: {graphs}"
