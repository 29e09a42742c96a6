"""
train.py's config keys with their defaults: the small recursive char-level model of README's first command.
A config file (config/*.py) is plain Python that sets some of these; `--key=value` overrides follow in order
(configurator.py checks names and types). Comments say what a key does and why its default is what it is.
"""
# I/O
out_dir = 'out-shakespeare-char'
eval_interval = 500
log_interval = 50
eval_iters = 20           # batches per eval; 0 = the whole split (each row or window once)
eval_only = False
always_save_checkpoint = True
init_from = 'scratch'  # 'scratch', 'resume' (from out_dir/ckpt.pt), or 'trm:PATH' (weights saved by the official TRM code)
overwrite = False      # a fresh run into an out_dir that holds a run replaces it only if True (else it refuses)
seed = 1337
# logging
wandb_log = False
wandb_project = 'nanotrm'
wandb_run_name = 'shakespeare-char'
# data: the task follows from the folder data/<dataset>: train.bin (language model) or meta.json (puzzles, control)
dataset = 'shakespeare_char'
batch_size = 8     # small batches, many steps: the fastest way down at this size on a CPU
block_size = 128
gradient_accumulation_steps = 1
# model: a small recursive net, 2 layers x (n_loops + 1) calls x T cycles x n_sup steps. The cheapest
# recursion wins at equal wall-clock on char-level Shakespeare: measured, n_sup=2 costs 2x per token and its
# second step gains nothing at this size (docs/results.md); raise n_sup/T/n_loops to study them.
n_layer = 2
n_head = 4
n_kv_head = 2
n_embd = 128
mlp = 'swiglu'
expansion = 4.0
norm = 'rmsnorm'
norm_position = ''  # '' = post with recursion (TRM), pre without (plain GPT)
norm_eps = 1e-5
rope_theta = 10000.0
dropout = 0.0
bias = False
tie_weights = False
recursion = True
n_loops = 1
T_recursion = 1
n_sup = 1
learnable_inits = False
act = True
mixer = 'attention'     # or mlp_t: TRM's MLP over the sequence axis, for small fixed grids (Sudoku)
puzzle_emb_ndim = 0     # > 0: a learned per-puzzle embedding laid over a prefix of the sequence (ARC)
puzzle_emb_len = 0      # its positions (0: ceil(puzzle_emb_ndim / n_embd))
trm_faithful = False    # compute exactly what the official TRM code computes (see model.py)
separate_nets = False   # the y update gets its own n_layer blocks, as HRM's H/L modules; the TRM paper found one
                        # shared net better on Sudoku (block parameters double, FLOPs stay)
memory_slots = 0        # > 0: a learned bank of this many key/value slots that every z update reads by cross-attention,
                        # each read scaled by its certainty (1 - its entropy over the slots / log memory_slots)
memory_read_y = False   # the y updates read the memory too
yz_init_from = ''       # puzzles: 'ckpt:PATH' (a nanoTRM LM checkpoint) | 'hf:PATH' (a local Hugging Face causal LM):
                        # y_init/z_init per example from the frozen LM's states of the input as text (condition.py)
yz_init_pool = 'mean'   # mean | attention: the frozen states of an input pooled to one vector
# deep supervision: loss = sum_s w_s loss_s + improvement term + ACT term
supervision_weight_base = 1.0   # w_s ~ base ** ((s-1)/(n_sup-1)); 1 = uniform
improvement_reward_scale = 0.0  # * mean_s relu(loss_s - loss_{s-1}.detach())
act_loss_weight = 0.5           # * sum_s w_s BCE(q_s, "argmax is right")
loss = 'softmax'                # softmax | stablemax (TRM's cross-entropy for puzzles: s(x) = x+1 or 1/(1-x))
# schedule: batch = n_sup steps per batch, one optimizer step (LM default); trm = one optimizer step per
# supervision step, (y, z) carried across batches, halted rows replaced by fresh ones (the TRM paper's)
schedule = ''                   # '' = the task's default: trm for puzzles, batch otherwise
halt_exploration_prob = 0.1     # how often a row (trm) or token (halt_train) draws a random minimum number of steps before halting
halt_threshold = 0.5            # evals score the answer at the first step where sigmoid(q) > this (`_halt` metrics);
                                # training halts at 0.5 (q > 0), as TRM
halt_train = False              # language models (batch schedule): train under per-token halting as inference runs it:
                                # a token whose q-head says "halt" shows later steps its keys/values of that step
random_n_sup = False            # each batch runs 1..2*n_sup-1 supervision steps (uniform, mean n_sup), so that later
                                # steps learn to keep refining (recurrent-depth models); the batch schedule
eval_n_sup = 0                  # supervision steps evals run (0 = n_sup); more: test-time scaling, logged as _s<k>
puzzle_emb_lr = 0.0             # the puzzle embedding's learning rate (0 = learning_rate; TRM: 1e-2)
puzzle_emb_weight_decay = 0.1
arc_n_aug = 512                 # ARC: augmentations per task, each its own puzzle embedding
arc_eval_votes = 8              # ARC eval: each test pair solved under this many augmentations, voted (pass@1/@2)
arc_eval_pairs = 0              # ARC eval: test pairs scored for pass@k (0 = all)
# control (data/control/<system>): loss = MSE to the optimal controls + rollout_loss_weight * mean log(J / J*)
rollout_loss_weight = 0.0       # the rollout term weighs control errors by what they cost (control.rollout_loss)
rollout_feedback = False        # from the second supervision step on, each row's input also holds what the previous
                                # step's controls do: the states reached and their errors to the target (control.with_feedback)
act_cost_tol = 0.02             # q learns "the rollout ends within the system's success_tol, at J <= (1 + this) J*"
# optimizer: AdamW, warmup + cosine
learning_rate = 3e-3
max_iters = 5000
max_seconds = 0.0  # > 0: a wall-clock budget (evals included): the lr cosine spans it; when spent, the run evaluates, saves, stops
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.99
grad_clip = 1.0
decay_lr = True
warmup_iters = 50
lr_decay_iters = 5000
min_lr = 3e-4
# GrokFast (Lee et al. 2024): before each optimizer step, grad += lamb * EMA(grad) amplifies the slow part of
# the gradient, which speeds up grokking (generalisation long after the train loss is down); the paper's values
grokfast_alpha = 0.98  # the EMA's decay
grokfast_lamb = 0.0    # the amplification; 0 = off (paper: 2.0)
# early stopping: when an eval reaches the target, evaluate, checkpoint and stop (as max_seconds does)
early_stop_metric = ''   # a metric as evals log it in metrics.jsonl ('test_exact_halt', 'val_loss_s2'); '' = off
early_stop_value = 0.0   # the target
early_stop_mode = ''     # 'min' (stop at <= value), 'max' (>=); '' = min for names with loss/cost/err/mse, else max
# EMA of weights: used for eval and the best checkpoint
use_ema = True
ema_decay = 0.999
# faults: a step with a non-finite loss or gradient is skipped; this many in a row stop the run
max_nonfinite_steps = 10
# system
device = ''    # '' = auto: cuda > mps > cpu
dtype = ''     # '' = auto: bfloat16 where native (Ampere+, AMX/AVX512-BF16 CPUs), float16 on older CUDA, else float32
compile = True  # inductor works on CPU too: ~20 s to compile (cached after), ~1.3x faster steps
fsdp = False    # under torchrun: shard weights, gradients and optimizer state over the ranks (FSDP2) instead of DDP
