# Defaults for every run, and the schema of valid config keys: a key is valid if and only if this
# file assigns it, and its value here fixes the key's type (int is accepted where a float is
# expected). Encoding files (configs/rope.py, ...) change a few lines on top of this one.
#
# Sized for WikiText-103 on one A100/H100-class GPU, so that a sweep of all 8 encodings fits in
# one night:
#
#   model   GPT-2 small: 12 layers, 768 wide, 12 heads, no biases, vocab 50257 padded to 50304.
#           N = 123.6M parameters (85.0M in the blocks + 38.6M tied token embedding/output head),
#           plus the encoding's own few (learned absolute: +0.4M; ALiBi, RoPE, NoPE: none).
#   batch   16 windows x 512 tokens x 4 accumulation steps = 32,768 tokens per iteration;
#           10,000 iterations = 328M tokens, about 2.8 passes over WikiText-103's ~120M tokens.
#   FLOPs   6N + 6 * n_layer * n_embd * block_size = 742M + 28M = 0.77 GFLOP per token
#           (forward + backward; the second term is attention counted causally: a query meets
#           T/2 keys on average, half of PaLM appendix B's 12 * n_layer * n_embd * T, which
#           counts the masked half too; derived in train.flops_per_token, the MFU train.py logs).
#   speed   A100 (312 bf16 TFLOPS) at 40% MFU: 125 TFLOPS / 0.77 GFLOP = ~162k tokens/s,
#           i.e. ~0.20 s per iteration and ~34 min per run. H100 SXM (989 TFLOPS) at 30-40%:
#           ~385k-515k tokens/s, ~11-14 min per run. These are the fused (flash) attention
#           encodings (NoPE, RoPE, sinusoidal, learned); encodings with an additive bias (ALiBi,
#           T5, Shaw) or a decay (damped RoPE) run attention with an explicit mask and are
#           slower, up to ~2x (the ALiBi paper measured T5 at half of sinusoidal's speed).
#           The 10-run WikiText-103 sweep: ~9 h on an A100, ~4 h on an H100.
#   length  block_size = 512, the ALiBi paper's training length, so our extrapolation curves
#           line up with its tables (evaluate at 512 ... 16k with scripts/eval_lengths.py).
#
# The same file runs on a laptop (device "auto" picks the CPU) but takes days there: use
# configs/demo/*.py for CPU-sized runs.

# I/O
out_dir = "out/wikitext103/base"  # run directory: ckpt.pt, log.jsonl, config.json
eval_interval = 500  # evaluate (and checkpoint) every this many iterations, and at iter 0
log_interval = 10  # print a progress line every this many iterations
eval_iters = 30  # evaluation batches: 30 x 16 windows x 512 = 246k tokens ~ all of val
always_save_checkpoint = True  # False: checkpoint at an evaluation only if val loss improved
init_from = "scratch"  # "scratch" or "resume" (continue the run in out_dir exactly)

# wandb logging (WANDB_MODE=offline works without network)
wandb_log = False
wandb_project = "nanope"
wandb_run_name = ""  # empty: the last part of out_dir

# data: data_dir/dataset/{train,val}.bin and meta.json, made by data/prepare.py
dataset = "wikitext103"
data_dir = "data"
gradient_accumulation_steps = 4  # total over all GPUs; divided by the number of DDP processes
batch_size = 16  # windows per micro-step (per GPU)
block_size = 512  # training length L

# model
encoding = "rope"  # a file in encodings/; see configs/<encoding>.py
encoding_kwargs = {}  # that encoding's options, e.g. {"base": 10000.0} for rope
n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.1  # ~2.8 passes over a 120M-token corpus: a little dropout curbs late overfitting
bias = False  # biases in Linears and LayerNorms (False: slightly faster, as good)
# "index": attention reads token indices; "learned": a learned clock per layer and head that
# relative encodings run on (not absolute ones, NoPE or CoPE). README, "Time from the data"
time = "index"
time_shared = False  # time="learned": one clock for all layers (from the embeddings), not one each
# "index": training positions 0 .. T-1; "randomized": each training sequence gets sorted distinct
# positions drawn from [0, max_train_position) (Ruoss et al. 2023); evaluation always uses 0 .. T-1
train_positions = "index"
# randomized positions' bound, >= block_size (0: 8 x block_size); learned tables get that many rows
max_train_position = 0

# AdamW
learning_rate = 6e-4  # peak learning rate
max_iters = 10000
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0  # clip the global gradient norm at this value; 0.0 disables

# learning-rate schedule: linear warmup, then cosine decay to min_lr
decay_lr = True
warmup_iters = 500
lr_decay_iters = 0  # iteration where the cosine reaches min_lr; 0 means max_iters
min_lr = 6e-5  # ~learning_rate / 10 (Chinchilla)

# system
device = "auto"  # "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:1", "mps"
# "auto": bfloat16 autocast on GPUs that support it, else float32. Also "float32", "bfloat16",
# "float16" (with a grad scaler). CPU runs always train in float32.
dtype = "auto"
# CUDA: TF32 for what runs in float32 (10-bit mantissa matmul inputs, much faster). False where an
# encoding amplifies the rounding of q and k (configs/generator_jordan.py)
tf32 = True
# attention kernel for the bias encodings (ALiBi, T5, KERPLE, ...): "auto" trains them through
# FlexAttention on CUDA (scripts/preflight.py compares it with SDPA), SDPA elsewhere; "sdpa" always
# SDPA; "flex" FlexAttention wherever it runs
attn_backend = "auto"
compile = True  # torch.compile the model (inductor: CUDA, or CPU with a C++ compiler); MPS: eager
seed = 1337
peak_tflops = 0.0  # the GPU's peak, for the MFU in the progress line; 0: from its name (train.py)
