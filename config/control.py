# Control, double integrator (data/control/prepare.py --system=double_integrator): the medium size of
# TinyRecursiveControl's small/medium/large (~0.2M / ~0.8M / ~2M parameters; config/control_small.py and
# control_large.py are the others).   python train.py config/control.py
# Each supervision step maps (x0, target, t/H) per horizon step to the 15 accelerations; eval reports
# MSE, final-state error, cost ratio (mean, p95) and success at every step.
out_dir = 'out-control'
dataset = 'control/double_integrator'
wandb_run_name = 'control-di'
# model: 2 layers x 192 wide, 4 heads, bidirectional over the horizon. The recursion is the cheapest
# one (2 net calls per supervision step, 2 steps) so that a run fits 10 CPU-minutes; a deeper one
# (n_loops 3-6, T 2-3, n_sup 4-16) costs 3-20x more per example: --n_loops=3 --T_recursion=2 --n_sup=4
n_layer = 2
n_embd = 192
n_head = 4
n_kv_head = 4
n_loops = 1
T_recursion = 1
n_sup = 2
# no q-head: its loss (0.5 x BCE, ~0.2-0.3) outweighs the controls' MSE (~3e-4) a thousandfold in the shared
# trunk's gradient and caps their precision: 3400 iters with it reach val cost ratio 1.116 / 90% success,
# without it 1.0023 / 99.9% (docs/results.md)
act = False
# deep supervision: the last step's answer counts most (weights 1/5, 4/5 for n_sup 2). Measured on a tiny
# model (300 iters, 2 seeds): uniform weights leave step 2 worse than step 1, base 4 makes it better
supervision_weight_base = 4.0
# training
batch_size = 64
max_iters = 3400          # a 10-minute CPU budget: 8m27s on 2 idle cores (141-148 ms an iteration, fp32)
lr_decay_iters = 3400
learning_rate = 2e-3      # 4e-3 collapses to a constant output without the q-head (2 of 2 seeds)
min_lr = 1e-4
warmup_iters = 50
weight_decay = 0.0
eval_interval = 850
eval_iters = 16           # 16 x 64 rows: the whole 1000-example val and test splits
log_interval = 50
ema_decay = 0.999
dtype = 'float32'         # bf16 runs 1.3x faster an iteration on a bf16 CPU but trains worse (loss 0.75 vs 0.10 at iter 200)
compile = False
