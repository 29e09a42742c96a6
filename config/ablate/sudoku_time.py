# Time to accuracy on a 2-core CPU: the TRM paper's recipe at CPU size (config/sudoku_cpu.py's model) on medium
# Sudoku (minimal puzzles needing 1-7 guesses of a search: harder than sudoku_cpu's >= 36-clue ones), 1000
# training puzzles (the paper's count) with on-the-fly augmentation, EMA, the trm schedule. 30 minutes per run,
# one thread each; the whole test split (1000 puzzles) is scored every 250 iterations: exact.png plots exact match
# at the halting step against wall time (evals included) and results.md gives the final point over 3 seeds.
#   python data/sudoku/prepare.py --difficulty=medium --n_train=1000 --n_test=1000 --out_dir=data/sudoku_medium
#   python ablate.py config/ablate/sudoku_time.py --jobs=2     # 2 settings x 3 seeds x 30 minutes: 1.5 h on 2 cores
config = 'config/sudoku_cpu.py'
budget = {'seconds': 1800}
common = {'dataset': 'sudoku_medium', 'max_seconds': 1800, 'eval_interval': 250, 'eval_iters': 0}
seeds = [1337, 1338, 1339]
settings = {
    'trm mlp_t': {},
    'recursion off': {'recursion': False},  # the same parameters, one net call per token
}
