# Time to accuracy on a 2-core CPU: the TRM paper's recipe at CPU size (config/sudoku_cpu.py's model) on medium
# Sudoku (minimal puzzles needing 1-7 guesses of a search: harder than sudoku_cpu's >= 36-clue ones), 1000
# training puzzles (the paper's count) with on-the-fly augmentation, EMA, the trm schedule. One hour per run,
# one thread each. Every 500 iterations 256 test puzzles are scored (~30 s of one thread, ~7% of the hour: a
# whole-split eval costs ~2 minutes); exact.png plots exact match at the halting step against wall time (evals
# included). The final point over the whole test split: python eval.py --out_dir=<the seeds' dirs> --eval_iters=0
#   python data/sudoku/prepare.py --difficulty=medium --n_train=1000 --n_test=1000 --out_dir=data/sudoku_medium
#   python ablate.py config/ablate/sudoku_time.py --jobs=2     # 3 settings x 3 seeds x 1 hour: 4.5 h on 2 cores
config = 'config/sudoku_cpu.py'
budget = {'seconds': 3600}
common = {'dataset': 'sudoku_medium', 'max_seconds': 3600, 'eval_interval': 500, 'eval_iters': 4}
seeds = [1337, 1338, 1339]
settings = {
    'trm mlp_t': {},
    'recursion off': {'recursion': False},  # the same parameters, one net call per token
    # self-attention with RoPE in place of the MLP over the 81 cells; at mlp_t's lr 3e-3 it stalls at loss 1.45
    # and diverges by iteration 500 (seed 1337, cells .18)
    'trm attention': {'mixer': 'attention', 'learning_rate': 1e-3, 'min_lr': 1e-4},
}
