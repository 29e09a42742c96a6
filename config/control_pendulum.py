# Control, torque-bounded pendulum (data/control/prepare.py --system=pendulum: best of 18 starts, many local
# ones), the small size so that n_sup 8 fits a CPU. The n_sup comparison at equal parameters:
#   python train.py config/control_pendulum.py
#   python train.py config/control_pendulum.py --n_sup=1 --out_dir=out-control-pendulum-sup1
import os
exec(open(os.path.join(os.path.dirname(__file__), 'control_small.py')).read())
dataset = 'control/pendulum'
out_dir = 'out-control-pendulum'
wandb_run_name = 'control-pendulum'
n_sup = 8
# the q-head stays on (n_sup 8 can halt): the BCE that costs the double integrator its precision (MSE ~3e-4
# there) is small next to the pendulum's MSE (~2). Results at these settings: docs/results.md
act = True
eval_iters = 4            # 4 x 64 rows: the whole 250-example val and test splits
max_iters = 400           # a CPU budget (n_sup 8: ~0.4 CPU-s an iteration)
lr_decay_iters = 400
eval_interval = 200
