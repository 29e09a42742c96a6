# Does recursion help a language model on a task that needs iterated computation? Pointer chasing
# (data/reasoning/pointer: 1-4 hops, hard split 5-8) at equal tokens (2000 iterations of 16 x 128):
# plain models of 1-6 layers (the curve that prices a loop), the recursive 2-layer net with n_sup 1/2/4,
# with more cycles (T=2), with a random number of steps per batch, and halting (every recursive run's
# _halt metrics). Evals run 8 supervision steps (test-time scaling past training's n_sup).
#   python data/reasoning/prepare.py
#   python ablate.py config/ablate/reasoning.py --jobs=2               # ~40 min per seed on 2 cores
#   python ablate.py config/ablate/reasoning.py --jobs=2 --dataset=reasoning/addition
config = 'config/reasoning.py'
budget = {'max_iters': 2000, 'lr_decay_iters': 2000}
common = {'eval_n_sup': 8, 'eval_interval': 500}
seeds = [1337, 1338, 1339]
settings = {
    **{f'plain L={n}': {'recursion': False, 'n_layer': n} for n in (1, 2, 3, 4, 6)},
    'rec n_sup=1': {'n_sup': 1},  # 2 layers x 2 net calls: the same FLOPs/token as plain L=4
    'rec n_sup=2': {'n_sup': 2},
    'rec n_sup=4': {'n_sup': 4},
    'rec n_sup=2 T=2': {'n_sup': 2, 'T_recursion': 2},
    'rec n_sup=2 random': {'n_sup': 2, 'random_n_sup': True},
}
