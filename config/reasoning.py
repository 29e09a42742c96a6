# Reasoning tasks where depth matters (python data/reasoning/prepare.py): pointer chasing by default,
#   python train.py config/reasoning.py                                  # ~5 min on 2 CPU cores
#   python train.py config/reasoning.py --dataset=reasoning/addition     # or reasoning/modular
# The default recursive net (2 layers, post-norm) with 2 supervision steps; the loss counts the answers
# only (data/reasoning/*/train_mask.bin). Evals score greedy exact match per step, at the halting step and
# per hop count / digit count, and run 2x the supervision steps training runs (test-time scaling).
out_dir = 'out-reasoning'
wandb_run_name = 'reasoning'
dataset = 'reasoning/pointer'
batch_size = 16
block_size = 128
n_sup = 2
eval_n_sup = 4
max_iters = 3000
lr_decay_iters = 3000
warmup_iters = 100
eval_interval = 500
eval_iters = 10
log_interval = 100
# runs of a few thousand iterations: an EMA of 0.999 would still lag the weights by ~1000 of them
use_ema = False
compile = False  # ~20 s of compile would be a tenth of a short run
