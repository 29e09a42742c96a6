# Control, double integrator (data/control/prepare.py --system=double_integrator): the medium size of
# TinyRecursiveControl's small/medium/large (~0.2M / ~0.8M / ~2M parameters; config/control_small.py and
# control_large.py are the others).   python train.py config/control.py
# Each supervision step maps (x0, target, t/H) per horizon step to the 15 accelerations; eval reports
# MSE, final-state error, cost ratio (mean, p95) and success at every step.
out_dir = 'out-control'
dataset = 'control/double_integrator'
wandb_run_name = 'control-di'
# model: 2 layers x 192 wide, 4 heads, bidirectional over the horizon. The recursion is the cheapest
# one (2 net calls per supervision step, 2 steps) so that a run fits 10 CPU-minutes; DESIGN's range for
# control (n_loops 3-6, T 2-3, n_sup 4-16) costs 3-20x more per example: --n_loops=3 --T_recursion=2 --n_sup=4
n_layer = 2
n_embd = 192
n_head = 4
n_kv_head = 4
n_loops = 1
T_recursion = 1
n_sup = 2
# no q-head: its loss (0.5 x BCE, ~0.2-0.3) outweighs the controls' MSE (~3e-4) a thousandfold in the shared
# trunk's gradient and caps the precision the target needs. 3400 iters with it: val cost ratio 1.116 / 90% (README)
act = False
# deep supervision: the last step's answer counts most (weights 1/5, 4/5 for n_sup 2). Measured on a tiny
# model (300 iters, 2 seeds): uniform weights leave step 2 worse than step 1, base 4 makes it better
supervision_weight_base = 4.0
# training
batch_size = 64
max_iters = 3400          # 8m27s on the 2 idle cores of this CPU (141-148 ms an iteration, fp32)
lr_decay_iters = 3400
learning_rate = 2e-3      # without the q-head; with it, 4e-3 did better (800 iters: cost ratio 1.18 vs 1.22)
min_lr = 1e-4
warmup_iters = 50
weight_decay = 0.0
eval_interval = 850
eval_iters = 16           # 16 x 64 rows: the whole 1000-example val and test splits
log_interval = 50
ema_decay = 0.999
dtype = 'float32'         # bf16 ran 1.3x faster an iteration here but trained worse (loss 0.75 vs 0.10 at iter 200)
compile = False
