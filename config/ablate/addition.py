# Does recursion help a language model on a task that needs carries to chain? Addition of 1-3 digit numbers
# (data/reasoning/addition3, answers most significant digit first: the first digit needs every carry; hard
# split: 4-5 digits) at equal tokens (4000 iterations of 16 x 128): the plain 2-layer net, the same 2 layers
# called twice per token (recursion: same parameters, 2x FLOPs) and a plain 4-layer net (the recursion's FLOPs,
# 2x params), all post-norm as the recursion is, all at lr 3e-3. Evals run 4 supervision steps (test-time
# scaling past the trained one) and halt where the q-head says so.
#   python data/reasoning/prepare.py --task=addition --digits=3 --out_dir=data/reasoning/addition3
#   python ablate.py config/ablate/addition.py --jobs=2               # ~75 min on 2 cores (3 seeds)
config = 'config/reasoning.py'
budget = {'max_iters': 4000, 'lr_decay_iters': 4000}
common = {'dataset': 'reasoning/addition3', 'eval_n_sup': 4, 'eval_interval': 500,
          'learning_rate': 3e-3, 'min_lr': 3e-4}
seeds = [1337, 1338, 1339]
settings = {
    'plain L=2 post': {'recursion': False, 'n_layer': 2, 'norm_position': 'post'},
    'plain L=4 post': {'recursion': False, 'n_layer': 4, 'norm_position': 'post'},
    'rec n_sup=1': {'n_sup': 1},
}
