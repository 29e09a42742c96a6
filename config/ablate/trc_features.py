# TinyRecursiveControl's TRM-feature study on a control task: its baseline (SiLU MLP, LayerNorm, pre-norm,
# expansion 2, learned y/z inits) with one TRM feature switched on at a time, and all of them (SwiGLU,
# RMSNorm, post-norm, expansion 4, fixed inits), each at TRC's recursion (2 layers x 128, n_loops 4, T 3).
#   python data/control/prepare.py --system=double_integrator
#   python ablate.py config/ablate/trc_features.py
config = 'config/control.py'
budget = {'max_iters': 500, 'lr_decay_iters': 500}
common = {'dataset': 'control/double_integrator', 'n_layer': 2, 'n_embd': 128, 'n_head': 4, 'n_kv_head': 4,
          'n_loops': 4, 'T_recursion': 3, 'eval_interval': 100, 'log_interval': 25}
baseline = {'mlp': 'silu', 'norm': 'layernorm', 'norm_position': 'pre', 'expansion': 2.0, 'learnable_inits': True}
settings = {
    'baseline': baseline,
    'swiglu_only': {**baseline, 'mlp': 'swiglu'},
    'rmsnorm_only': {**baseline, 'norm': 'rmsnorm'},
    'postnorm_only': {**baseline, 'norm_position': 'post'},
    'expansion4_only': {**baseline, 'expansion': 4.0},
    'all_trm': {'mlp': 'swiglu', 'norm': 'rmsnorm', 'norm_position': 'post', 'expansion': 4.0, 'learnable_inits': False},
}
