# Control, Van der Pol oscillator (data/control/prepare.py --system=van_der_pol: 20k/1k/1k examples, force-bounded,
# the pendulum's weights and horizon): the pendulum's recipe as it is (small, n_sup 4, rollout feedback, rollout
# loss, 10 minutes).
#   python train.py config/control_van_der_pol.py
import os
exec(open(os.path.join(os.path.dirname(__file__), 'control_pendulum.py')).read())
dataset = 'control/van_der_pol'
out_dir = 'out-control-van_der_pol'
wandb_run_name = 'control-van_der_pol'
