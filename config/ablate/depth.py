# What a loop is worth on char-level Shakespeare: plain models of 1-6 layers (the curve) and the recursive
# 2-layer net (n_sup 1, 2, 2 with a random number of steps per batch; T 2) at equal tokens (600 iterations of
# 8 x 128, the recursion grid's budget); results.md places each recursive model on the plain curve (equivalent
# depth, worth per applied layer, phi). Evals run 8 supervision steps: test-time scaling past training's.
#   python data/shakespeare_char/prepare.py
#   python ablate.py config/ablate/depth.py --jobs=2            # ~15 min per seed on 2 cores
budget = {'max_iters': 600, 'lr_decay_iters': 600}
seeds = [1337, 1338, 1339]
common = {'compile': False, 'warmup_iters': 30, 'eval_interval': 150, 'eval_iters': 10, 'log_interval': 50,
          'eval_n_sup': 8}
settings = {
    **{f'plain L={n}': {'recursion': False, 'n_layer': n} for n in (1, 2, 3, 4, 6)},
    # the recursion is post-norm (TRM), the plain models pre-norm: the same plain models post-norm
    **{f'plain L={n} post': {'recursion': False, 'n_layer': n, 'norm_position': 'post'} for n in (2, 4, 6)},
    'rec n_sup=1': {},
    'rec n_sup=2': {'n_sup': 2},
    'rec n_sup=2 random': {'n_sup': 2, 'random_n_sup': True},
    'rec n_sup=1 T=2': {'T_recursion': 2},
}
