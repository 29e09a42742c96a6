"""
The control task: system definitions, batched differentiable rollouts, costs and metrics, and train.py's task
surface (see lm.py). The optimal controls that are the data's ground truth come from control_solver.py.

A control example is an initial state x0 [n], a target state x* [n] and a sequence of H
controls u [H, m]. The discrete system is x_{t+1} = step(x_t, u_t) and the cost is

    J = sum_{t=0}^{H-1} [(x_t - x*)' Q (x_t - x*) + u_t' R u_t] + (x_H - x*)' Qf (x_H - x*)

A system is a plain JSON-able dict (it is what data/control/prepare.py stores in meta.json):
name, dt, horizon, n_state, n_control, Q, R, Qf, u_min/u_max (None = unbounded), the
matrices A, B of a linear system or the params of a nonlinear one (a second-order system
x = (q, q'), q'' = accel(q, q', u), one RK4 step per control interval), success_tol
(final-state error counted as a success) and the boxes the x0 / targets were drawn from.

Features are [N, H, 2n+1] float32: at every horizon step t the row [x0 (n), x* (n), t/H]
(model_inputs appends rollout feedback's columns, with_feedback fills them). Targets are the optimal
controls [N, H, m].

    sys_ = load_meta('data/control/double_integrator')
    xs = rollout(sys_, x0, u)             # [B, H+1, n], torch, differentiable
    J = cost(sys_, xs, u, target)         # [B]
    m = metrics(sys_, x0, target, u_pred, u_opt)   # dict of floats
"""
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from model import halted

SPLITS = ('train', 'val', 'test')
SYSTEMS = ('double_integrator', 'pendulum', 'van_der_pol')


def make_system(name):
    """The default definition of a named system (what prepare.py writes)."""
    if name == 'double_integrator':
        # position/velocity, acceleration input; exact zero-order-hold discretisation.
        # H = 15 as TinyRecursiveControl; dt = 0.33 makes it a ~5 s manoeuvre.
        dt, H = 0.33, 15
        return dict(name=name, dt=dt, horizon=H, n_state=2, n_control=1,
                    A=[[1.0, dt], [0.0, 1.0]], B=[[0.5 * dt * dt], [dt]],
                    Q=[[1.0, 0.0], [0.0, 0.1]], R=[[0.1]], Qf=[[100.0, 0.0], [0.0, 100.0]],
                    u_min=None, u_max=None,  # unconstrained: finite-horizon LQR is the exact optimum
                    success_tol=0.1,
                    x0_low=[-2.0, -1.0], x0_high=[2.0, 1.0], target_low=[-2.0, -1.0], target_high=[2.0, 1.0])
    if name == 'pendulum':
        # theta = 0 hangs down, +-pi is upright; torque input, bounded below m*g*l so that large
        # moves need a swing. One RK4 step per control interval (zero-order hold), 3 s horizon.
        # Angles are not wrapped: the target is one angle in [-pi, pi] (theta* + 2 pi is a miss).
        return dict(name=name, dt=0.2, horizon=15, n_state=2, n_control=1, integrator='rk4',
                    params=dict(g=9.81, l=1.0, m=1.0, damping=0.1),
                    # a heavy terminal weight: with Q = diag(1, .1), Qf = diag(100, 10) the optimum
                    # missed the 0.1 tolerance in ~20% of examples; with these in ~3% (the rest of the
                    # misses are out of reach in 3 s under the torque bound), see meta['stats']
                    Q=[[0.1, 0.0], [0.0, 0.01]], R=[[0.01]], Qf=[[1000.0, 0.0], [0.0, 100.0]],
                    u_min=[-5.0], u_max=[5.0],
                    success_tol=0.1,
                    x0_low=[-math.pi, -2.0], x0_high=[math.pi, 2.0], target_low=[-math.pi, 0.0], target_high=[math.pi, 0.0])
    if name == 'van_der_pol':
        # q'' = mu (1 - q^2) q' - q + u: negative damping inside |q| < 1 pushes every state out towards the
        # limit cycle (amplitude ~2), positive damping outside pulls it in; stopping at a target fights both.
        # The pendulum's weights, horizon and tolerance; mu and the force bound chosen so that the optimum
        # reaches the tolerance in ~99% of examples and clipped LQR on the linearisation costs ~1.4x the optimum.
        return dict(name=name, dt=0.2, horizon=15, n_state=2, n_control=1, integrator='rk4',
                    params=dict(mu=2.0),
                    Q=[[0.1, 0.0], [0.0, 0.01]], R=[[0.01]], Qf=[[1000.0, 0.0], [0.0, 100.0]],
                    u_min=[-3.0], u_max=[3.0],
                    success_tol=0.1,
                    x0_low=[-2.0, -2.0], x0_high=[2.0, 2.0], target_low=[-1.5, 0.0], target_high=[1.5, 0.0])
    raise ValueError(f"unknown control system {name!r}; choose one of {', '.join(SYSTEMS)}")


def _t(a, like):
    return torch.as_tensor(a, dtype=like.dtype, device=like.device)


def pendulum_coeffs(system):
    """(a, b, c) of theta'' = -a sin(theta) - b theta' + c u."""
    p = system['params']
    ml2 = p['m'] * p['l'] ** 2
    return p['g'] / p['l'], p['damping'] / ml2, 1.0 / ml2


def accel(system, q, v, u):
    """q'' of a nonlinear system at q, q' = v under control u (torch, batched [B])."""
    if system['name'] == 'pendulum':
        a, b, c = pendulum_coeffs(system)
        return -a * torch.sin(q) - b * v + c * u
    if system['name'] == 'van_der_pol':
        mu = system['params']['mu']
        return mu * (1 - q * q) * v - q + u
    raise ValueError(f"unknown control system {system['name']!r}")


def step(system, x, u):
    """One discrete step, batched: x [B, n], u [B, m] -> [B, n]. Works for any float dtype."""
    if 'A' in system:  # any linear system: x' = A x + B u
        return x @ _t(system['A'], x).T + u @ _t(system['B'], x).T
    h = system['dt']  # a nonlinear one: RK4, u held over the interval

    def f(s):
        return torch.stack([s[:, 1], accel(system, s[:, 0], s[:, 1], u[:, 0])], dim=1)
    k1 = f(x)
    k2 = f(x + 0.5 * h * k1)
    k3 = f(x + 0.5 * h * k2)
    k4 = f(x + h * k3)
    return x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)


def rollout(system, x0, u):
    """States along the horizon: x0 [B, n], u [B, H, m] -> xs [B, H+1, n] (xs[:, 0] = x0)."""
    x0, u = torch.as_tensor(x0), torch.as_tensor(u)
    if u.dtype != x0.dtype:
        u = u.to(x0.dtype)
    xs = [x0]
    for t in range(u.shape[1]):
        xs.append(step(system, xs[-1], u[:, t]))
    return torch.stack(xs, dim=1)


def cost(system, xs, u, target):
    """J per example: xs [B, H+1, n], u [B, H, m], target [B, n] -> [B]."""
    e = xs - target[:, None, :]
    Q, R, Qf = _t(system['Q'], xs), _t(system['R'], xs), _t(system['Qf'], xs)
    stage = torch.einsum('bti,ij,btj->b', e[:, :-1], Q, e[:, :-1]) + torch.einsum('bti,ij,btj->b', u, R, u)
    return stage + torch.einsum('bi,ij,bj->b', e[:, -1], Qf, e[:, -1])


def clip_controls(system, u):
    """Project controls onto the box [u_min, u_max] (no-op for an unbounded system)."""
    if system.get('u_max') is None:
        return u
    return torch.maximum(torch.minimum(u, _t(system['u_max'], u)), _t(system['u_min'], u))


def check_controls(system, u, name='u_pred'):
    """One clear error for controls of the wrong shape (the usual mistake: a missing last axis)."""
    want = (system['horizon'], system['n_control'])
    if len(u.shape) != 3 or tuple(u.shape[1:]) != want:
        raise ValueError(f"{name} has shape {tuple(u.shape)}; expected [batch, {want[0]}, {want[1]}] "
                         f"(horizon, n_control of {system['name']})")


def total_cost(system, x0, target, u):
    """J of controls u (clipped to the bounds first): all torch, differentiable, [B]."""
    u = clip_controls(system, u)
    return cost(system, rollout(system, x0, u), u, target)


def rollout_loss(system, x0, target, u_pred, opt_cost, log=True):
    """A differentiable loss the trainer can add: how much worse than optimal the clipped predictions
    are, mean log(J(u_pred) / J*) (scale-free: costs span orders of magnitude across examples and
    systems; log=False gives the mean relative excess (J - J*) / J* instead). Both are >= 0 up to solver
    tolerance. Plus a quadratic penalty on the part of u_pred outside the bounds, since clipping alone
    gives those entries no gradient. Computed in float32 or better with autocast off: a bf16 rollout
    of 15 steps would drown the cost differences it measures."""
    check_controls(system, u_pred)
    if u_pred.dtype not in (torch.float32, torch.float64):
        u_pred = u_pred.float()
    kw = dict(dtype=u_pred.dtype, device=u_pred.device)
    x0, target = torch.as_tensor(x0, **kw), torch.as_tensor(target, **kw)
    opt_cost = torch.as_tensor(opt_cost, **kw).clamp_min(1e-12)
    with torch.autocast(device_type=u_pred.device.type, enabled=False):
        J = total_cost(system, x0, target, u_pred)
        loss = (J.clamp_min(1e-12).log() - opt_cost.log()).mean() if log else ((J - opt_cost) / opt_cost).mean()
        if system.get('u_max') is not None:
            loss = loss + (u_pred - clip_controls(system, u_pred)).pow(2).mean()
    return loss


@torch.no_grad()
def metrics(system, x0, target, u_pred, u_opt):
    """Compare predicted controls with the optimal ones (numpy or torch in; float64 inside).
    Predictions are clipped to the bounds before the rollout, so cost_ratio >= 1 whenever u_opt
    is the true optimum. Returns python floats: control_mse (raw predictions vs optimal), final_err
    (mean |x_H - x*|), cost_ratio (mean J(u_pred)/J(u_opt)), its median and p95, success (fraction with
    final error <= success_tol), and opt_final_err / opt_success of u_opt for reference."""
    check_controls(system, u_pred)
    check_controls(system, u_opt, 'u_opt')
    as64 = lambda a: a.detach().cpu().double() if torch.is_tensor(a) else torch.tensor(np.array(a, dtype=np.float64))
    x0, target, u_pred, u_opt = map(as64, (x0, target, u_pred, u_opt))
    up = clip_controls(system, u_pred)
    xs_p, xs_o = rollout(system, x0, up), rollout(system, x0, u_opt)
    J_p, J_o = cost(system, xs_p, up, target), cost(system, xs_o, u_opt, target)
    ratio = J_p / J_o.clamp_min(1e-12)
    err_p = (xs_p[:, -1] - target).norm(dim=1)
    err_o = (xs_o[:, -1] - target).norm(dim=1)
    tol = system['success_tol']
    return dict(control_mse=(u_pred - u_opt).pow(2).mean().item(),
                final_err=err_p.mean().item(),
                cost_ratio=ratio.mean().item(),
                cost_ratio_median=torch.quantile(ratio, 0.5).item(),
                cost_ratio_p95=torch.quantile(ratio, 0.95).item(),
                success=(err_p <= tol).double().mean().item(),
                opt_final_err=err_o.mean().item(),
                opt_success=(err_o <= tol).double().mean().item())


def split_features(system, X):
    """(x0, target) [B, n] from model inputs [B, H, 2n+1] (every row of a sequence repeats them)."""
    n = system['n_state']
    return X[:, 0, :n], X[:, 0, n:2 * n]


def good_enough(system, x0, target, u, opt_cost, cost_tol):
    """Per row [B] bool: the clipped controls u end within success_tol of the target and cost at most
    (1 + cost_tol) times the optimum. What the q-head learns to predict (ACT's "this answer is right")."""
    u = clip_controls(system, u)
    xs = rollout(system, x0, u)
    err = (xs[:, -1] - target).norm(dim=1)
    return (err <= system['success_tol']) & (cost(system, xs, u, target) <= (1 + cost_tol) * opt_cost)


def make_features(x0, target, horizon):
    """The stored features [N, H, 2n+1] float32: row t = [x0, target, t/H] (numpy in and out)."""
    x0, target = np.asarray(x0, dtype=np.float32), np.asarray(target, dtype=np.float32)
    N = x0.shape[0]
    t = np.broadcast_to((np.arange(horizon, dtype=np.float32) / horizon)[None, :, None], (N, horizon, 1))
    rep = lambda a: np.broadcast_to(a[:, None, :], (N, horizon, a.shape[1]))
    return np.ascontiguousarray(np.concatenate([rep(x0), rep(target), t], axis=2))


def feedback_dims(system):
    """Columns rollout feedback adds to every row of the features: 1 + m + 3n."""
    return 1 + system['n_control'] + 3 * system['n_state']


def model_inputs(system, features, config):
    """The first supervision step's inputs from features [N, H, 2n+1] (torch): with rollout_feedback, the
    feedback columns appended, zero until a step has run."""
    return F.pad(features, (0, feedback_dims(system))) if config.get('rollout_feedback') else features


@torch.no_grad()
def with_feedback(system, X, u):
    """Rollout feedback: the next supervision step's inputs, X [B, H, 2n+1+feedback_dims] with its feedback
    columns replaced by what this step's controls u [B, H, m] do. Row t gets [1, u_t, x_{t+1},
    x_{t+1} - x*, x_H - x*]: a flag (0 before the first step), the control clipped to the bounds, the state
    it leads to when all of u is rolled out from x0, that state's error to the target, and the final error
    (the same on every row: what the whole sequence missed by). The target, not the optimal path: at
    inference the optimum is unknown. Float32 or better with autocast off, as rollout_loss."""
    n = system['n_state']
    x0, target = split_features(system, X)
    dtype = torch.promote_types(X.dtype, torch.float32)
    with torch.autocast(device_type=X.device.type, enabled=False):
        x0, target = x0.to(dtype), target.to(dtype)
        uc = clip_controls(system, u.detach().to(dtype))
        xs = rollout(system, x0, uc)[:, 1:]
        err = xs - target[:, None]
        flag = torch.ones_like(uc[..., :1])
        fb = torch.cat([flag, uc, xs, err, err[:, -1:].expand_as(err)], dim=2)
    return torch.cat([X[..., :2 * n + 1], fb.to(X.dtype)], dim=2)


def load_meta(data_dir):
    path = os.path.join(data_dir, 'meta.json')
    if not os.path.exists(path):
        raise ValueError(f"no control data at {data_dir} (missing meta.json); "
                         f"run `python data/control/prepare.py` first")
    with open(path) as f:
        return json.load(f)


def load_split(data_dir, split):
    """One split as a dict of numpy arrays (features, targets, x0, target, opt_cost) plus
    'system', the meta dict."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    system = load_meta(data_dir)
    out = {'system': system}
    for key in ('features', 'targets', 'x0', 'target', 'opt_cost'):
        path = os.path.join(data_dir, f'{split}_{key}.npy')
        if not os.path.exists(path):
            raise ValueError(f"missing {path}; rerun `python data/control/prepare.py --system={system['name']}`")
        out[key] = np.load(path)
    return out


# ----------------------------------------------------------------------------- drawing examples

def sample_states(rng, low, high, n):
    """Uniform in the box, rounded to float32 so the stored states are exactly the ones solved for."""
    low, high = np.asarray(low), np.asarray(high)
    return (low + (high - low) * rng.random((n, len(low)))).astype(np.float32).astype(np.float64)


# ----------------------------------------------------------------------------- the control task (train.py's surface: see lm.py)

SCHEDULES = ('batch', 'trm')
NEXT_COMMAND = 'python solve.py --out_dir={out_dir}'


def load(data_dir, config):
    """Every split as tensors (a few MB, held in memory); system: what the data was solved for."""
    splits = {split: load_split(data_dir, split) for split in SPLITS}
    system = splits['train']['system']
    for split, d in splits.items():
        if len(d['features']) == 0:
            raise ValueError(f"{data_dir} has no {split} examples; rerun `python data/control/prepare.py "
                             f"--system={system['name']} --n_{split}=N` with N > 0")
    tensors = {split: {'features': model_inputs(system, torch.from_numpy(d['features']), config),
                       'targets': torch.from_numpy(d['targets'])} for split, d in splits.items()}
    return {'splits': tensors, 'system': system}


def model_args(data, config):
    """Features in (a linear embedding), controls out (a linear head), one position per horizon step,
    bidirectional."""
    system = data['system']
    n_feedback = feedback_dims(system) if config.get('rollout_feedback') else 0
    return {'vocab_size': 0, 'block_size': system['horizon'], 'causal': False,
            'n_features': system['n_features'] + n_feedback, 'n_outputs': system['n_control']}


def draw(data, generator, shape):
    return torch.randint(len(data['splits']['train']['features']), shape, generator=generator), None


def get_batch(data, split, ix, aug_seed=None):
    """Features [B, H, 2n+1] in, optimal controls [B, H, m] out."""
    d = data['splits'][split]
    return d['features'][ix], d['targets'][ix], None


def eval_rows(data, split, generator, config, rank, world_size):
    """The first eval_iters * batch_size examples, each once, the same on every rank (the percentiles
    of eval_split need all of them together); eval_iters=0: all of them."""
    n = len(data['splits'][split]['features'])
    n = min(n, config['eval_iters'] * config['batch_size'] or n)
    return torch.arange(n).split(config['batch_size'])


def losses(logits, q, X, Y, data, config):
    """One supervision step of a controller: (loss, ACT BCE, q accuracy), the last two None without a
    q-head. loss = MSE to the optimal controls Y, + rollout_loss_weight * rollout_loss. The q-head learns
    whether the rollout is good enough (good_enough at act_cost_tol). x0 and target are read from the
    inputs X. Rollouts in float32 with autocast off (see rollout_loss)."""
    system = data['system']
    u = logits.float()
    loss = F.mse_loss(u, Y)
    if not config['rollout_loss_weight'] and q is None:
        return loss, None, None
    with torch.autocast(device_type=X.device.type, enabled=False):
        x0, target = split_features(system, X.float())
        opt_cost = total_cost(system, x0, target, Y)  # the data's J*, recomputed: cheaper than carrying it
        if config['rollout_loss_weight']:
            loss = loss + config['rollout_loss_weight'] * rollout_loss(system, x0, target, u, opt_cost)
        if q is None:
            return loss, None, None
        with torch.no_grad():
            good = good_enough(system, x0, target, u, opt_cost, config['act_cost_tol']).float()
        bce = F.binary_cross_entropy_with_logits(q.float(), good)
    return loss, bce, (halted(q).float() == good).float().mean()


def next_input(X, logits, data, config):
    """The next supervision step's inputs: with rollout_feedback, X with what this step's controls do."""
    return with_feedback(data['system'], X, logits) if config.get('rollout_feedback') else X


def batch_metrics(logits, q, X, Y, data):
    return {}


def eval_outputs(logits):
    return logits.float()


def eval_split(model, data, split, X, Y, outputs, config, run):
    """Per supervision step, the rollout metrics (metrics()) of the split's predicted controls, and what
    the optimal controls reach (opt_success: the ceiling)."""
    system = data['system']
    x0, target = split_features(system, X)
    out = {}
    for s, u in enumerate(outputs):
        m = metrics(system, x0, target, u, Y)
        for k in ('control_mse', 'final_err', 'cost_ratio', 'cost_ratio_median', 'cost_ratio_p95', 'success'):
            out[f'{split}_{k}_s{s + 1}'] = m[k]
        out[f'{split}_opt_success'] = m['opt_success']
    return out


def summary(metrics, split, S, config):
    per_step = lambda k, f: ' '.join(f"{metrics[f'{split}_{k}_s{s + 1}']:{f}}" for s in range(S))
    line = (f"  {split} cost ratio per step: {per_step('cost_ratio', '.4f')}; median {per_step('cost_ratio_median', '.3f')}; "
            f"p95 {per_step('cost_ratio_p95', '.3f')}; "
            f"success {per_step('success', '.3f')} (optimum {metrics[f'{split}_opt_success']:.3f})")
    if f'{split}_halt_step' in metrics:
        line += (f"; at the halting step (mean {metrics[f'{split}_halt_step']:.2f}) cost ratio "
                 f"{metrics[f'{split}_cost_ratio_halt']:.4f}, success {metrics[f'{split}_success_halt']:.3f}")
    return line


def log_speed(tok_per_s, block_size, steps_per_iter):
    return {}
