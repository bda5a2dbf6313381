# Learned absolute positions (GPT-2): no row past block_size, so no longer inputs.
encoding = "learned"
out_dir = "out/wikitext103/learned"
