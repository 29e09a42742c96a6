"""
Optimal-control ground truth for the control tasks (see control.py for the cost and layouts).

  double_integrator  linear, unconstrained: finite-horizon LQR towards a target (backward
                     Riccati recursion in error coordinates with an affine term), checked
                     against the closed form (stacked dynamics, quadratic in u solved directly).
  pendulum           nonlinear, torque-bounded: open-loop optimum from scipy L-BFGS-B with box
                     bounds and exact adjoint gradients of the RK4-discretised problem, best of
                     several starts (zero, clipped LQR on the linearisation, +-constant,
                     +-bang-bang, random), the winner polished; --verify measures the gap.

Writes to --out_dir (default data/control/<system>/):
  meta.json                 the system (control.make_system) + feature layout, sizes, solver,
                            per-split stats (optimum's final error and success, baselines)
  <split>_features.npy      float32 [N, H, 2n+1], row t = [x0, target, t/H]
  <split>_targets.npy       float32 [N, H, m]   optimal controls
  <split>_x0.npy            float32 [N, n]      initial states
  <split>_target.npy        float32 [N, n]      target states
  <split>_opt_cost.npy      float64 [N]         J of the stored (float32) optimal controls

    python data/control/prepare.py                       # both systems, default sizes
    python data/control/prepare.py --system=pendulum --n_train=2000 --num_proc=8
    python data/control/prepare.py --system=pendulum --verify=100   # + how good are the optima?
"""
import argparse
import json
import math
import multiprocessing
import os
import sys
import time

# before numpy loads: BLAS threads make L-BFGS-B on 15 variables ~10x slower; processes parallelise instead
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
import numpy as np
import torch
from scipy.optimize import minimize
from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repo root, for control.py
import control  # noqa: E402

# the pendulum costs ~0.55 CPU-seconds an example (18 starts): its default is ~23 CPU-minutes, ~3 min with 8 processes
DEFAULT_SIZES = {'double_integrator': (10000, 1000, 1000), 'pendulum': (2000, 250, 250)}


def sample_states(rng, low, high, n):
    """Uniform in the box, rounded to float32 so the stored states are exactly the ones solved for."""
    low, high = np.asarray(low), np.asarray(high)
    return (low + (high - low) * rng.random((n, len(low)))).astype(np.float32).astype(np.float64)


# ----------------------------------------------------------------------------- LQR (linear)

def riccati(A, B, Q, R, Qf, H, c):
    """Finite-horizon LQR in error coordinates e = x - x*, where e' = A e + B u + c (c [N, n] is
    the affine term, (A - I) x* for a linear system). The value is V_t(e) = e'P_t e + 2 p_t'e + const
    and the optimal control u_t = -K_t e_t - k_t. Returns K [H, m, n] (shared) and k [N, H, m]."""
    N, (n, m) = c.shape[0], B.shape
    P, p = Qf.copy(), np.zeros((N, n))
    K, k = np.zeros((H, m, n)), np.zeros((N, H, m))
    for t in reversed(range(H)):
        S = R + B.T @ P @ B
        Kt = np.linalg.solve(S, B.T @ P @ A)
        kt = np.linalg.solve(S, ((c @ P.T + p) @ B).T).T          # S^-1 B'(P c + p), per row
        Acl = A - B @ Kt
        w = (c - kt @ B.T) @ P.T + p                               # P (c - B k) + p
        p = kt @ R.T @ Kt + w @ Acl                                # K'R k + Acl'(P (c - B k) + p)
        P = Q + Kt.T @ R @ Kt + Acl.T @ P @ Acl
        P = 0.5 * (P + P.T)
        K[t], k[:, t] = Kt, kt
    return K, k


def lqr_riccati(A, B, Q, R, Qf, H, x0, target):
    """Optimal controls [N, H, m] of the linear problem, by the Riccati recursion."""
    c = target @ (A - np.eye(len(A))).T
    K, k = riccati(A, B, Q, R, Qf, H, c)
    e, us = x0 - target, []
    for t in range(H):
        u = -e @ K[t].T - k[:, t]
        us.append(u)
        e = e @ A.T + u @ B.T + c
    return np.stack(us, axis=1)


def lqr_closed_form(A, B, Q, R, Qf, H, x0, target):
    """Optimal controls [N, H, m] by stacking the dynamics: X = [x_1..x_H] = Sx x0 + Su U, so
    J = (X - X*)'Qbar(X - X*) + U'Rbar U + const, minimised by one linear solve."""
    n, m = B.shape
    Sx = np.zeros((H * n, n))
    Su = np.zeros((H * n, H * m))
    Ap = [np.linalg.matrix_power(A, i) for i in range(H + 1)]
    for t in range(H):  # row block t is x_{t+1}
        Sx[t * n:(t + 1) * n] = Ap[t + 1]
        for s in range(t + 1):
            Su[t * n:(t + 1) * n, s * m:(s + 1) * m] = Ap[t - s] @ B
    Qbar = np.kron(np.eye(H), Q)
    Qbar[-n:, -n:] = Qf
    Rbar = np.kron(np.eye(H), R)
    d = x0 @ Sx.T - np.tile(target, (1, H))                        # X - X* at U = 0, [N, H n]
    U = -np.linalg.solve(Su.T @ Qbar @ Su + Rbar, (d @ Qbar @ Su).T).T
    return U.reshape(len(x0), H, m)


# ----------------------------------------------------------------------------- pendulum

def pendulum_problem(system):
    """Plain-float constants for the fast per-sample solver."""
    a, b, c = control.pendulum_coeffs(system)
    (q00, q01), (_, q11) = system['Q']
    (f00, f01), (_, f11) = system['Qf']
    return dict(a=a, b=b, c=c, h=system['dt'], H=system['horizon'], q=(q00, q01, q11), qf=(f00, f01, f11),
                r=system['R'][0][0], lo=system['u_min'][0], hi=system['u_max'][0])


def pendulum_step(pb, th, om, u):
    """One RK4 step on plain floats (the same arithmetic as control.step). Returns the next state and
    the stage angles whose cosines the adjoint needs."""
    a, b, c, h = pb['a'], pb['b'], pb['c'], pb['h']
    acc = lambda t_, o_: -a * math.sin(t_) - b * o_ + c * u
    k1t, k1o = om, acc(th, om)
    t2, o2 = th + 0.5 * h * k1t, om + 0.5 * h * k1o
    k2t, k2o = o2, acc(t2, o2)
    t3, o3 = th + 0.5 * h * k2t, om + 0.5 * h * k2o
    k3t, k3o = o3, acc(t3, o3)
    t4, o4 = th + h * k3t, om + h * k3o
    k4t, k4o = o4, acc(t4, o4)
    return th + h / 6 * (k1t + 2 * k2t + 2 * k3t + k4t), om + h / 6 * (k1o + 2 * k2o + 2 * k3o + k4o), (th, t2, t3, t4)


def pendulum_cost_grad(u, pb, x0, target):
    """J and dJ/du for one example (u: [H] floats), by a hand-written adjoint of the RK4 steps."""
    a, b, c, h = pb['a'], pb['b'], pb['c'], pb['h']
    (q00, q01, q11), (f00, f01, f11), r = pb['q'], pb['qf'], pb['r']
    th, om = x0
    tt, to = target
    J, states, stages = 0.0, [], []
    for ut in u:
        e0, e1 = th - tt, om - to
        J += q00 * e0 * e0 + 2 * q01 * e0 * e1 + q11 * e1 * e1 + r * ut * ut
        states.append((e0, e1))
        th, om, st = pendulum_step(pb, th, om, ut)
        stages.append(st)
    e0, e1 = th - tt, om - to
    J += f00 * e0 * e0 + 2 * f01 * e0 * e1 + f11 * e1 * e1
    gt, go = 2 * (f00 * e0 + f01 * e1), 2 * (f01 * e0 + f11 * e1)  # dJ/dx_H
    grad = np.zeros(len(u))
    for t in reversed(range(len(u))):
        c1, c2, c3, c4 = (math.cos(s) for s in stages[t])
        # x+ = x + h/6 (k1 + 2 k2 + 2 k3 + k4), k_i = f(s_i, u) with s_1 = x, s_2 = x + h/2 k1,
        # s_3 = x + h/2 k2, s_4 = x + h k3; f(s, u) = (s_o, -a sin s_t - b s_o + c u).
        # Walk the stages backwards; a vector-Jacobian product of f at s is (-a cos s_t g_o, g_t - b g_o).
        g3t, g3o = h / 3 * gt, h / 3 * go
        g2t, g2o = h / 3 * gt, h / 3 * go
        g1t, g1o = h / 6 * gt, h / 6 * go
        g4t, g4o = h / 6 * gt, h / 6 * go
        s4t, s4o = -a * c4 * g4o, g4t - b * g4o
        g3t, g3o = g3t + h * s4t, g3o + h * s4o
        s3t, s3o = -a * c3 * g3o, g3t - b * g3o
        g2t, g2o = g2t + 0.5 * h * s3t, g2o + 0.5 * h * s3o
        s2t, s2o = -a * c2 * g2o, g2t - b * g2o
        g1t, g1o = g1t + 0.5 * h * s2t, g1o + 0.5 * h * s2o
        s1t, s1o = -a * c1 * g1o, g1t - b * g1o
        du = c * (g1o + g2o + g3o + g4o)
        dxt, dxo = gt + s1t + s2t + s3t + s4t, go + s1o + s2o + s3o + s4o
        e0, e1 = states[t]
        grad[t] = du + 2 * r * u[t]
        gt, go = dxt + 2 * (q00 * e0 + q01 * e1), dxo + 2 * (q01 * e0 + q11 * e1)
    return J, grad


def pendulum_cost(u, pb, x0, target):
    return pendulum_cost_grad(u, pb, x0, target)[0]


def pendulum_lqr_baseline(pb, system, x0, target):
    """Clipped closed-loop LQR on the linearisation at (x*, u=0): e' ~ A e + B u + c with
    c = f(x*, 0) - x*, solved by the same affine Riccati recursion as the linear system."""
    eps = 1e-6
    f = lambda x, u: np.array(pendulum_step(pb, x[0], x[1], u)[:2])
    xs = np.asarray(target, dtype=float)
    A = np.stack([(f(xs + eps * d, 0.0) - f(xs - eps * d, 0.0)) / (2 * eps) for d in np.eye(2)], axis=1)
    B = ((f(xs, eps) - f(xs, -eps)) / (2 * eps))[:, None]
    c = (f(xs, 0.0) - xs)[None]
    K, k = riccati(A, B, np.array(system['Q']), np.array(system['R']), np.array(system['Qf']), pb['H'], c)
    x, us = np.asarray(x0, dtype=float), []
    for t in range(pb['H']):
        u = float(np.clip(-(K[t] @ (x - xs))[0] - k[0, t, 0], pb['lo'], pb['hi']))
        us.append(u)
        x = f(x, u)
    return np.array(us)


def pendulum_starts(pb, u_lqr, n, rng):
    """n initial guesses: zero, the clipped LQR baseline, constants at +-0.2 and +-0.5 of the bound,
    a full-torque kick either way then coasting, +-bang-bang switching at H/5, 2H/5, 3H/5 (swings
    either way), then uniform random. The problem has many local optima (swing direction, number of
    pumps, going round the long way): one start finds the best of 40 in only ~70% of examples, and
    14 starts missed a long-way-round optimum (24x cheaper, reached only from a small constant) in
    1 of 100 verified examples; the small constants were added for it."""
    H, lo, hi = pb['H'], pb['lo'], pb['hi']
    kick = np.r_[1.0, np.zeros(H - 1)]
    starts = [np.zeros(H), u_lqr, *(np.full(H, f * b) for f in (0.2, 0.5) for b in (hi, lo)), hi * kick, lo * kick]
    for k in (H // 5, 2 * H // 5, 3 * H // 5):
        bang = np.where(np.arange(H) < k, hi, lo).astype(float)
        starts += [bang, lo + hi - bang]
    starts += [rng.uniform(lo, hi, H) for _ in range(max(0, n - len(starts)))]
    return starts[:n]


def solve_pendulum(task):
    """Best L-BFGS-B optimum over several starts for one (x0, target). Returns (u [H], J, J_zero, J_lqr)."""
    system, x0, target, restarts, seed = task
    pb = pendulum_problem(system)
    H, lo, hi = pb['H'], pb['lo'], pb['hi']
    u_lqr = pendulum_lqr_baseline(pb, system, x0, target)
    opt = lambda u0, **kw: minimize(pendulum_cost_grad, u0, args=(pb, x0, target), jac=True, method='L-BFGS-B',
                                    bounds=[(lo, hi)] * H, options=dict(maxiter=2000, gtol=1e-9, **kw))
    best = None
    for u0 in pendulum_starts(pb, u_lqr, restarts, np.random.default_rng(seed)):
        res = opt(u0, ftol=1e-13)
        if best is None or res.fun < best.fun:
            best = res
    # the heavy terminal weight makes the problem ill-conditioned: L-BFGS-B sometimes stalls on the
    # relative-decrease test with the gradient far from 0, so polish the winner (no f test, more memory)
    for _ in range(3):
        res = opt(best.x, ftol=0.0, maxcor=30)
        if res.fun >= best.fun:
            break
        best = res
    return best.x, best.fun, pendulum_cost(np.zeros(H), pb, x0, target), pendulum_cost(u_lqr, pb, x0, target)


# ----------------------------------------------------------------------------- driver

def save_npy(path, arr):
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        np.save(f, arr)
    os.replace(tmp, path)  # never a half-written file under the real name


def run_tasks(tasks, num_proc, desc):
    bar = dict(total=len(tasks), desc=desc, unit='ex')
    if num_proc > 1:
        with multiprocessing.Pool(num_proc) as pool:
            return list(tqdm(pool.imap(solve_pendulum, tasks, chunksize=4), **bar))
    return [solve_pendulum(t) for t in tqdm(tasks, **bar)]


def verify_pendulum(system, x0, target, u, args):
    """Re-solve the first --verify examples with --verify_restarts starts (other random seeds) and
    measure how far the stored optimum u [N, H] is from that reference: gap = J / J_reference - 1."""
    n = min(args.verify, len(x0))
    pb = pendulum_problem(system)
    J = np.array([pendulum_cost(u[i], pb, x0[i], target[i]) for i in range(n)])
    tasks = [(system, x0[i], target[i], args.verify_restarts, [args.seed, 99, i]) for i in range(n)]
    J_ref = np.array([r[1] for r in run_tasks(tasks, args.num_proc, 'verify')])
    gap = J / np.minimum(J_ref, J) - 1
    return {'verify_n': n, 'verify_restarts': args.verify_restarts, 'verify_frac_within_1e-6': float(np.mean(gap <= 1e-6)),
            'verify_mean_gap': float(gap.mean()), 'verify_max_gap': float(gap.max())}


def solve_split(system, x0, target, args, seed):
    """Optimal controls [N, H, m] (float64) for one split, with a progress bar."""
    name = system['name']
    if name == 'double_integrator':
        mats = [np.array(system[k], dtype=np.float64) for k in ('A', 'B', 'Q', 'R', 'Qf')]
        u = lqr_riccati(*mats, system['horizon'], x0, target)
        gap = np.abs(u - lqr_closed_form(*mats, system['horizon'], x0, target)).max() if len(x0) else 0.0
        if gap > 1e-6:
            sys.exit(f"error: Riccati and closed-form LQR disagree by {gap:.2e}; the system matrices are ill-conditioned")
        return u, {'riccati_vs_closed_form_max_abs': float(gap)}
    tasks = [(system, x0[i], target[i], args.restarts, [*seed, i]) for i in range(len(x0))]
    res = run_tasks(tasks, args.num_proc, f'{name} L-BFGS-B')
    if not res:
        return np.zeros((0, system['horizon'], 1)), {}
    u = np.stack([r[0] for r in res])[:, :, None]
    J, Jz, Jl = (np.array([r[i] for r in res]) for i in (1, 2, 3))
    return u, {'mean_J_over_J_zero': float(np.mean(J / Jz)), 'mean_J_over_J_lqr_clipped': float(np.mean(J / Jl)),
               'frac_beats_lqr_clipped': float(np.mean(J <= Jl + 1e-9))}


def prepare(name, args):
    system = control.make_system(name)
    out_dir = args.out_dir or os.path.join(HERE, name)
    if args.out_dir and args.system == 'both':
        out_dir = os.path.join(args.out_dir, name)
    os.makedirs(out_dir, exist_ok=True)
    sizes = dict(zip(control.SPLITS, DEFAULT_SIZES[name]))
    for s in control.SPLITS:
        if getattr(args, f'n_{s}') is not None:
            sizes[s] = getattr(args, f'n_{s}')
    meta = dict(system, feature_layout='per horizon step t: [x0 (n_state), target (n_state), t/horizon]',
                n_features=2 * system['n_state'] + 1, sizes=sizes, seed=args.seed,
                solver=('finite-horizon LQR (Riccati, checked against closed form)' if name == 'double_integrator'
                        else f'scipy L-BFGS-B, exact adjoint gradients, best of {args.restarts} starts'),
                stats={})
    t0 = time.time()
    for si, split in enumerate(control.SPLITS):
        rng = np.random.default_rng([args.seed, si])  # each split its own stream: sizes never shift others
        n = sizes[split]
        x0 = sample_states(rng, system['x0_low'], system['x0_high'], n)
        target = sample_states(rng, system['target_low'], system['target_high'], n)
        u, stats = solve_split(system, x0, target, args, seed=[args.seed, si])
        u32 = u.astype(np.float32)
        J = control.total_cost(system, torch.from_numpy(x0), torch.from_numpy(target),
                               torch.from_numpy(u32.astype(np.float64))).numpy()
        save_npy(os.path.join(out_dir, f'{split}_features.npy'), control.make_features(x0, target, system['horizon']))
        save_npy(os.path.join(out_dir, f'{split}_targets.npy'), u32)
        save_npy(os.path.join(out_dir, f'{split}_x0.npy'), x0.astype(np.float32))
        save_npy(os.path.join(out_dir, f'{split}_target.npy'), target.astype(np.float32))
        save_npy(os.path.join(out_dir, f'{split}_opt_cost.npy'), J)
        if split == 'train' and name == 'pendulum' and args.verify and n:
            stats.update(verify_pendulum(system, x0, target, u[:, :, 0], args))
        if n:
            m = control.metrics(system, x0, target, u32, u32)
            stats.update(mean_opt_cost=float(J.mean()), opt_final_err=m['opt_final_err'], opt_success=m['opt_success'])
        meta['stats'][split] = stats
        print(f"{name} {split}: {n} examples " + ' '.join(f'{k}={v:.4g}' for k, v in stats.items()))
    meta['seconds'] = round(time.time() - t0, 2)
    tmp = os.path.join(out_dir, 'meta.json.tmp')
    with open(tmp, 'w') as f:
        json.dump(meta, f, indent=1)
    os.replace(tmp, os.path.join(out_dir, 'meta.json'))
    print(f"{name}: wrote {out_dir} in {meta['seconds']:.1f}s")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--system', default='both', choices=['double_integrator', 'pendulum', 'both'])
    ap.add_argument('--out_dir', default=None, help='default data/control/<system>; with --system=both, <out_dir>/<system>')
    for s in control.SPLITS:
        ap.add_argument(f'--n_{s}', type=int, default=None, help='examples in the split (default per system)')
    ap.add_argument('--seed', type=int, default=1337)
    ap.add_argument('--restarts', type=int, default=18, help='L-BFGS-B starts per nonlinear example (14 structured, the rest random)')
    ap.add_argument('--verify', type=int, default=0, help='re-solve this many pendulum train examples with more starts and report the gap')
    ap.add_argument('--verify_restarts', type=int, default=40)
    ap.add_argument('--num_proc', type=int, default=max(1, (os.cpu_count() or 1)))
    args = ap.parse_args(argv)
    for s in control.SPLITS:
        if getattr(args, f'n_{s}') is not None and getattr(args, f'n_{s}') < 0:
            sys.exit(f"error: --n_{s} must be >= 0")
    if args.restarts < 1 or args.num_proc < 1:
        sys.exit("error: --restarts and --num_proc must be >= 1")
    torch.set_num_threads(1)
    for name in (['double_integrator', 'pendulum'] if args.system == 'both' else [args.system]):
        prepare(name, args)


if __name__ == '__main__':
    main()
