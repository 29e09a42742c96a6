# The second nonlinear system: config/control_van_der_pol.py (the pendulum's recipe) at equal training time,
# 10 minutes on one thread each, one supervision step against four with rollout feedback.
#   python data/control/prepare.py --system=van_der_pol --num_proc=2
#   python ablate.py config/ablate/van_der_pol.py --jobs=2
config = 'config/control_van_der_pol.py'
budget = {'seconds': 600}
common = {'max_seconds': 600}
seeds = [1337, 1338, 1339]
settings = {
    'n_sup 1': {'n_sup': 1, 'rollout_feedback': False},
    'n_sup 4 feedback': {},
}
