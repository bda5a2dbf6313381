# The rest of the field on the CPU demo (`make demo-field`): every encoding beyond the first
# eight, trained and evaluated as configs/sweeps/demo.py, next to four references from that demo
# (alibi, t5, rope, nope) so that its table and plot stand on their own. ~6 minutes on 2 cores
# without the probes.
include("demo.py")  # its seeds, common, eval_args, context_args, jobs and threads
name = "demo_field"
out_dir = "out/sweeps/demo_field"
_field = ["kerple", "sandwich", "fire", "xl", "tener", "huang", "da", "xpos", "p_rope", "axial",
          "cope"]  # fmt: skip
runs = [dict(name=e, config=f"configs/demo/{e}.py") for e in _field]
runs += [dict(name=e, config=f"configs/demo/{e}.py") for e in ("alibi", "t5", "rope", "nope")]
