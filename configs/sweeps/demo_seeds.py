# `make demo-seeds`: the demo sweep (configs/sweeps/demo.py) with three seeds, into the same
# out_dir: seed 1337's runs from `make demo` count as done, and the tables and plots then show
# mean +- sample std over the seeds. About 2x the demo's time on top of it.
include("demo.py")
seeds = [1337, 1338, 1339]
