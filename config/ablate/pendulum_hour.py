# The pendulum recipe at the full budget of the control targets (30 minutes of 2 cores = one hour of one
# thread): n_sup 4 with rollout feedback for the iterations it completes in an hour on one thread (1715 per 10
# minutes, measured in config/ablate/pendulum.py's runs), the lr cosine spanning them. Iterations, not seconds,
# so that three seeds can share two cores and still train the same amount.
#   python ablate.py config/ablate/pendulum_hour.py --jobs=3
config = 'config/control_pendulum.py'
budget = {'max_iters': 10290}
seeds = [1337, 1338, 1339]
settings = {
    'n_sup 4 feedback': {'lr_decay_iters': 10290},
}
