# The core comparison of config/ablate/reasoning.py at a longer budget, on the easier pointer set (1-2 hops
# among 2 chains; hard split 3-4 hops): the plain 2-layer net, the same 2 layers called twice per token
# (recursion, same parameters, 2x FLOPs), and a plain 4-layer net (same FLOPs as the recursion, 2x params).
# 4000 iterations of 16 x 128 each; one seed per run (--seeds=1337,1338,1339 for three).
#   python data/reasoning/prepare.py --task=pointer --hops=2 --distractors=1 --out_dir=data/reasoning/pointer_h2
#   python ablate.py config/ablate/reasoning_core.py --jobs=2                         # ~40 min on 2 cores
config = 'config/reasoning.py'
budget = {'max_iters': 4000, 'lr_decay_iters': 4000}
common = {'dataset': 'reasoning/pointer_h2', 'eval_n_sup': 4, 'eval_interval': 500}
seeds = [1337]
settings = {  # plain models at the default lr 3e-3 (they train at it), the recursion at the preset's 1e-3
    'plain L=2': {'recursion': False, 'n_layer': 2, 'learning_rate': 3e-3, 'min_lr': 3e-4},
    'plain L=4': {'recursion': False, 'n_layer': 4, 'learning_rate': 3e-3, 'min_lr': 3e-4},
    'rec n_sup=1': {'n_sup': 1},
}
