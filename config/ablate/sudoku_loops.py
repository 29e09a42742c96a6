# The TRM paper's study of the recursion's shape on Sudoku: latent updates per cycle (n_loops, the paper's n)
# x cycles per supervision step (T), at a CPU-sized budget (the paper's best is n=6, T=3). Effective
# depth per supervision step = T * (n_loops + 1) * n_layer.
#   python data/sudoku/prepare.py --difficulty=easy --min_clues=36 --n_train=10000 --n_test=1000 --out_dir=data/sudoku_easy36
#   python ablate.py config/ablate/sudoku_loops.py
config = 'config/sudoku_cpu.py'
budget = {'max_iters': 300, 'lr_decay_iters': 300}
common = {'eval_interval': 100, 'log_interval': 25, 'warmup_iters': 30}  # the budget's max_iters replaces sudoku_cpu's max_seconds
settings = {
    'n2_T2': {'n_loops': 2, 'T_recursion': 2},
    'n3_T2': {'n_loops': 3, 'T_recursion': 2},
    'n6_T2': {'n_loops': 6, 'T_recursion': 2},
    'n2_T3': {'n_loops': 2, 'T_recursion': 3},
    'n3_T3': {'n_loops': 3, 'T_recursion': 3},
    'n6_T3': {'n_loops': 6, 'T_recursion': 3},
}
