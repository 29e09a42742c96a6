# The second nonlinear system: config/control_van_der_pol.py (the pendulum's recipe) at equal training compute,
# one supervision step against four with rollout feedback, each for the iterations it completes in 10 minutes
# on one thread (the pendulum grid's runs: the same model and horizon, 7311 and 1715 iterations).
#   python data/control/prepare.py --system=van_der_pol --num_proc=2
#   python ablate.py config/ablate/van_der_pol.py --jobs=2
config = 'config/control_van_der_pol.py'
budget = {'max_iters': 1715}
seeds = [1337, 1338, 1339]
settings = {
    'n_sup 1': {'n_sup': 1, 'rollout_feedback': False, 'max_iters': 7311, 'lr_decay_iters': 7311},
    'n_sup 4 feedback': {'lr_decay_iters': 1715},
}
