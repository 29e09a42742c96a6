# Control, torque-bounded pendulum (data/control/prepare.py --system=pendulum: 50k/1k/1k examples, best of 18
# starts: many local optima), the small size (0.22M parameters), n_sup 4 with rollout feedback: from the second
# supervision step on, each step also sees what the previous step's controls do (control.with_feedback).
#   python train.py config/control_pendulum.py
# n_sup 1 vs 4, feedback on and off, at equal time and 3 seeds: python ablate.py config/ablate/pendulum.py --jobs=2
import os
exec(open(os.path.join(os.path.dirname(__file__), 'control_small.py')).read())
dataset = 'control/pendulum'
out_dir = 'out-control-pendulum'
wandb_run_name = 'control-pendulum'
n_sup = 4
rollout_feedback = True
act = False               # as the double integrator's presets: the BCE costs the controls precision
# the rollout loss (mean log J(u) / J*) picks one of the optima where the MSE alone averages them: in 8-minute
# runs (one seed) val success .40 without it, .65 / .67 / .69 at weight 1 / 3 / 10 (median ratio 1.88 / 1.16 / 1.14 / 1.18)
rollout_loss_weight = 3.0
max_seconds = 600         # a CPU budget (the lr cosine spans it). On one thread, 3 seeds: test success .695, median
                          # J/J* 1.12 (step 1: .548; n_sup 1 in the same time: .706, 1.08); docs/results.md
max_iters = 1000000
lr_decay_iters = 1000000
eval_interval = 500
eval_iters = 16           # 16 x 64 rows: the whole 1000-example val and test splits
