"""
The independent reference for the nonlinear systems' optimal controls: one example at a time by scipy's
L-BFGS-B on plain floats, with q'' and its partials written again from control.accel and a hand-written
adjoint of the RK4 steps. ~0.55 CPU-s a pendulum example: control_solver.solve_batched makes the data,
this checks it (data/control/prepare.py --verify) or replaces it (--solver=scipy).

    u, J, J_zero, J_lqr = solve_reference((system, x0, target, restarts, seed))
"""
import math
import multiprocessing

import numpy as np
from scipy.optimize import minimize
from tqdm import tqdm

from control import pendulum_coeffs
from control_solver import lqr_baseline, make_starts


def reference_problem(system):
    """Plain-float constants for the reference solver, with q'' = acc(q, v, u) of control.accel written again
    on floats and its partials d acc/dq, d acc/dv (d acc/du is the constant acc_u)."""
    name = system['name']
    if name == 'pendulum':
        a, b, c = pendulum_coeffs(system)
        acc = lambda q, v, u: -a * math.sin(q) - b * v + c * u
        partials = lambda q, v: (-a * math.cos(q), -b)
        acc_u = c
    elif name == 'van_der_pol':
        mu = system['params']['mu']
        acc = lambda q, v, u: mu * (1 - q * q) * v - q + u
        partials = lambda q, v: (-2 * mu * q * v - 1, mu * (1 - q * q))
        acc_u = 1.0
    else:
        raise ValueError(f"no reference solver for {name!r}")
    (q00, q01), (_, q11) = system['Q']
    (f00, f01), (_, f11) = system['Qf']
    return dict(acc=acc, partials=partials, acc_u=acc_u, h=system['dt'], H=system['horizon'], q=(q00, q01, q11),
                qf=(f00, f01, f11), r=system['R'][0][0], lo=system['u_min'][0], hi=system['u_max'][0])


def reference_step(pb, q, v, u):
    """One RK4 step on plain floats (the same arithmetic as control.step). Returns the next state and
    the four stage states, which the adjoint needs."""
    h, acc = pb['h'], pb['acc']
    k1q, k1v = v, acc(q, v, u)
    q2, v2 = q + 0.5 * h * k1q, v + 0.5 * h * k1v
    k2q, k2v = v2, acc(q2, v2, u)
    q3, v3 = q + 0.5 * h * k2q, v + 0.5 * h * k2v
    k3q, k3v = v3, acc(q3, v3, u)
    q4, v4 = q + h * k3q, v + h * k3v
    k4q, k4v = v4, acc(q4, v4, u)
    return (q + h / 6 * (k1q + 2 * k2q + 2 * k3q + k4q), v + h / 6 * (k1v + 2 * k2v + 2 * k3v + k4v),
            ((q, v), (q2, v2), (q3, v3), (q4, v4)))


def reference_cost_grad(u, pb, x0, target):
    """J and dJ/du for one example (u: [H] floats), by a hand-written adjoint of the RK4 steps."""
    h, partials = pb['h'], pb['partials']
    (q00, q01, q11), (f00, f01, f11), r = pb['q'], pb['qf'], pb['r']
    q, v = x0
    tq, tv = target
    J, states, stages = 0.0, [], []
    for ut in u:
        e0, e1 = q - tq, v - tv
        J += q00 * e0 * e0 + 2 * q01 * e0 * e1 + q11 * e1 * e1 + r * ut * ut
        states.append((e0, e1))
        q, v, st = reference_step(pb, q, v, ut)
        stages.append(st)
    e0, e1 = q - tq, v - tv
    J += f00 * e0 * e0 + 2 * f01 * e0 * e1 + f11 * e1 * e1
    gq, gv = 2 * (f00 * e0 + f01 * e1), 2 * (f01 * e0 + f11 * e1)  # dJ/dx_H
    grad = np.zeros(len(u))
    for t in reversed(range(len(u))):
        (d1q, d1v), (d2q, d2v), (d3q, d3v), (d4q, d4v) = (partials(*s) for s in stages[t])
        # x+ = x + h/6 (k1 + 2 k2 + 2 k3 + k4), k_i = f(s_i, u) with s_1 = x, s_2 = x + h/2 k1,
        # s_3 = x + h/2 k2, s_4 = x + h k3; f(s, u) = (s_v, acc(s_q, s_v, u)). Walk the stages backwards;
        # a vector-Jacobian product of f at s is (d acc/dq g_v, g_q + d acc/dv g_v).
        g3q, g3v = h / 3 * gq, h / 3 * gv
        g2q, g2v = h / 3 * gq, h / 3 * gv
        g1q, g1v = h / 6 * gq, h / 6 * gv
        g4q, g4v = h / 6 * gq, h / 6 * gv
        s4q, s4v = d4q * g4v, g4q + d4v * g4v
        g3q, g3v = g3q + h * s4q, g3v + h * s4v
        s3q, s3v = d3q * g3v, g3q + d3v * g3v
        g2q, g2v = g2q + 0.5 * h * s3q, g2v + 0.5 * h * s3v
        s2q, s2v = d2q * g2v, g2q + d2v * g2v
        g1q, g1v = g1q + 0.5 * h * s2q, g1v + 0.5 * h * s2v
        s1q, s1v = d1q * g1v, g1q + d1v * g1v
        du = pb['acc_u'] * (g1v + g2v + g3v + g4v)
        dxq, dxv = gq + s1q + s2q + s3q + s4q, gv + s1v + s2v + s3v + s4v
        e0, e1 = states[t]
        grad[t] = du + 2 * r * u[t]
        gq, gv = dxq + 2 * (q00 * e0 + q01 * e1), dxv + 2 * (q01 * e0 + q11 * e1)
    return J, grad


def reference_cost(u, pb, x0, target):
    return reference_cost_grad(u, pb, x0, target)[0]


def solve_reference(task):
    """Best L-BFGS-B optimum over several starts for one (x0, target). Returns (u [H], J, J_zero, J_lqr)."""
    system, x0, target, restarts, seed = task
    pb = reference_problem(system)
    H, lo, hi = pb['H'], pb['lo'], pb['hi']
    u_lqr = lqr_baseline(system, x0[None], target[None])[0]
    opt = lambda u0, **kw: minimize(reference_cost_grad, u0, args=(pb, x0, target), jac=True, method='L-BFGS-B',
                                    bounds=[(lo, hi)] * H, options=dict(maxiter=2000, gtol=1e-9, **kw))
    best = None
    for u0 in make_starts(system, u_lqr, restarts, np.random.default_rng(seed)):
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
    return best.x, best.fun, reference_cost(np.zeros(H), pb, x0, target), reference_cost(u_lqr, pb, x0, target)


def run_reference(tasks, num_proc, desc):
    """solve_reference on every task, in num_proc processes, with a progress bar."""
    bar = dict(total=len(tasks), desc=desc, unit='ex')
    if num_proc > 1:
        with multiprocessing.Pool(num_proc) as pool:
            return list(tqdm(pool.imap(solve_reference, tasks, chunksize=4), **bar))
    return [solve_reference(t) for t in tqdm(tasks, **bar)]
