# Recursion on a 2-core CPU: easy Sudoku (naked/hidden singles suffice), a small mlp_t TRM.
#   python data/sudoku/prepare.py --difficulty=easy --n_train=10000 --n_test=500 --out_dir=data/sudoku_easy
#   python train.py config/sudoku_cpu.py
#   python train.py config/sudoku_cpu.py --recursion=False --out_dir=out-sudoku-cpu-plain   # the baseline
# Not yet measured against the target (>= 80% exact in 20 minutes): see README.
dataset = 'sudoku_easy'
out_dir = 'out-sudoku-cpu'
wandb_run_name = 'sudoku-cpu'
mixer = 'mlp_t'
n_layer = 2
n_embd = 128
n_head = 4
n_kv_head = 4
n_loops = 3
T_recursion = 2
n_sup = 8
loss = 'stablemax'
schedule = 'trm'
batch_size = 64
learning_rate = 1e-3
weight_decay = 0.1
warmup_iters = 100
max_iters = 6000
lr_decay_iters = 6000
min_lr = 1e-4
eval_interval = 1000
eval_iters = 4
log_interval = 100
compile = False
