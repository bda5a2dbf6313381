# Learned absolute positions (GPT-2; Radford et al. 2019): a trained (block_size, n_embd) table
# added to the token embeddings. It has no row past block_size, so it cannot run longer inputs:
# scripts/eval_lengths.py reports those lengths as skipped, and sample.py crops its context.
encoding = "learned"
out_dir = "out/wikitext103/learned"
