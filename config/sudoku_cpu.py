# Recursion on a 2-core CPU in 20 minutes: easy Sudoku (naked/hidden singles suffice, >= 36 of 81 clues),
# a 0.38M-parameter mlp_t TRM, 8 supervision steps of 2 x (3 + 1) net calls.
#   python data/sudoku/prepare.py --difficulty=easy --min_clues=36 --n_train=10000 --n_test=1000 --out_dir=data/sudoku_easy36
#   python train.py config/sudoku_cpu.py
#   python train.py config/sudoku_cpu.py --recursion=False --out_dir=out-sudoku-cpu-plain   # baseline, same 20 minutes
# Softmax at lr 3e-3 on >= 36-clue puzzles: stable-max at lr 1e-3 on 22-28 clues reached 4% exact after 13
# minutes (docs/results.md). The lr cosine spans the 20-minute budget (max_seconds).
dataset = 'sudoku_easy36'
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
loss = 'softmax'
schedule = 'trm'
batch_size = 64
learning_rate = 3e-3
weight_decay = 0.1
warmup_iters = 100
min_lr = 3e-4
max_iters = 1000000     # the time budget decides
max_seconds = 1200      # 20 minutes, evals and compilation included
eval_interval = 100000  # evaluate at the start and the end only: under load an eval costs minutes of the budget
eval_iters = 8          # 512 test puzzles per eval
log_interval = 50
compile = True
