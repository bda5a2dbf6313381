# NoPE (Kazemnejad et al. 2023; Haviv et al. 2022): order from the causal mask alone.
encoding = "nope"
out_dir = "out/wikitext103/nope"
