# NoPE (Kazemnejad et al. 2023; Haviv et al. 2022): no positional encoding at all; order comes
# only from the causal mask.
encoding = "nope"
out_dir = "out/wikitext103/nope"
