# Does refinement pay on the pendulum? config/control_pendulum.py at equal training time (10 minutes, one
# thread each), one supervision step against four, four without and with rollout feedback, 3 seeds.
# (n_sup 1 has no second step, so feedback would change nothing but add zero columns.)
#   python data/control/prepare.py --system=pendulum --num_proc=2
#   python ablate.py config/ablate/pendulum.py --jobs=2
config = 'config/control_pendulum.py'
budget = {'seconds': 600}
common = {'max_seconds': 600}
seeds = [1337, 1338, 1339]
settings = {
    'n_sup 1': {'n_sup': 1, 'rollout_feedback': False},
    'n_sup 4': {'rollout_feedback': False},
    'n_sup 4 feedback': {},
}
