# The pendulum recipe at three times config/ablate/pendulum.py's budget: n_sup 1 against n_sup 4 with rollout
# feedback, each for the iterations it completes in 30 minutes on one thread (measured in that grid's runs:
# 7311 and 1715 iterations per 10 minutes), so the two get equal compute whatever else shares the machine.
#   python ablate.py config/ablate/pendulum_long.py --jobs=2
config = 'config/control_pendulum.py'
budget = {'max_iters': 5145}
seeds = [1337, 1338, 1339]
settings = {
    'n_sup 1': {'n_sup': 1, 'rollout_feedback': False, 'max_iters': 21933, 'lr_decay_iters': 21933},
    'n_sup 4 feedback': {'lr_decay_iters': 5145},
}
