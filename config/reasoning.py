# Reasoning tasks where depth matters (python data/reasoning/prepare.py): pointer chasing by default,
#   python train.py config/reasoning.py                                  # ~10 min on 2 CPU cores
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
# lr 3e-3 (the default) made the recursion diverge on this loss (a few answer tokens per window): its loss
# rose from 1.16 to 1.59 in iterations 300-500 on pointer chasing; at 1e-3 it trains as the plain models do
learning_rate = 1e-3
min_lr = 1e-4
max_iters = 3000
lr_decay_iters = 3000
warmup_iters = 100
eval_interval = 500
eval_iters = 10
log_interval = 100
# runs of a few thousand iterations: an EMA of 0.999 would still lag the weights by ~1000 of them
use_ema = False
compile = False  # ~20 s of compile would be a tenth of a short run
