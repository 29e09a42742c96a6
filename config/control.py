# Control, double integrator (data/control/prepare.py --system=double_integrator): the medium size of
# TinyRecursiveControl's small/medium/large (~0.2M / ~0.8M / ~2M parameters). Sizes:
#   python train.py config/control.py config/control_small.py    (or control_large.py)
# Each supervision step maps (x0, target, t/H) per horizon step to the 15 accelerations; eval reports
# MSE, final-state error, cost ratio (mean, p95) and success at every step.
out_dir = 'out-control'
dataset = 'control/double_integrator'
wandb_run_name = 'control-di'
# model: 2 layers x 192 wide, 4 heads, bidirectional over the horizon; TRM recursion
n_layer = 2
n_embd = 192
n_head = 4
n_kv_head = 4
n_loops = 3
T_recursion = 2
n_sup = 4
# training
batch_size = 256
max_iters = 3000
lr_decay_iters = 3000
learning_rate = 1e-3
min_lr = 1e-4
warmup_iters = 100
weight_decay = 0.0
eval_interval = 500
eval_iters = 4            # 4 x 256 rows: the whole 1000-example val and test splits
log_interval = 100
ema_decay = 0.999
dtype = 'float32'         # controls must be right to ~1%: bf16's 3 significant digits cost more than they save here
compile = False
