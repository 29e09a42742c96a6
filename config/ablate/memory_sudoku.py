# Does a persistent memory help the puzzle recursion? sudoku_cpu's TRM (mlp_t, 2 layers x 128, 8 supervision
# steps of 2 x (3 + 1) net calls) on easy Sudoku with a bank of 64 or 256 slots read by every z update, against
# what the parameters buy otherwise: a wider net (n_embd 144: memory 64's parameters, 10% more FLOPs; a deeper
# one is in config/ablate/memory.py, on Shakespeare). 400 iterations of the trm schedule, test
# exact at the halting step every 100 iterations (256 puzzles), 2 seeds (`rec` is condition.py's `fixed init`).
#   python data/sudoku/prepare.py --difficulty=easy --min_clues=36 --n_train=10000 --n_test=1000 --out_dir=data/sudoku_easy36
#   python ablate.py config/ablate/memory_sudoku.py --jobs=2
#   rec               0.38M params, 113 MFLOPs/token
#   rec memory 64     0.43M, 123        rec memory 256   0.48M, 132
#   rec n_embd=144    0.44M, 135
config = 'config/sudoku_cpu.py'
budget = {'max_iters': 400, 'lr_decay_iters': 400}
common = {'max_seconds': 0, 'eval_interval': 100, 'eval_iters': 4, 'compile': False}
seeds = [1337, 1338]
settings = {
    'rec': {},
    'rec memory 64': {'memory_slots': 64},
    'rec memory 256': {'memory_slots': 256},
    'rec n_embd=144': {'n_embd': 144},
}
