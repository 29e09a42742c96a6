"""
The optimal controls that are the control data's ground truth (data/control/prepare.py calls solve_split).

  linear (double integrator)  finite-horizon LQR by the Riccati recursion, checked against the closed form.
  nonlinear (pendulum, Van der Pol: torque/force-bounded, many local optima: which way to swing, how many
  pumps)  the best optimum over many starts (make_starts: zero, clipped LQR on the linearisation at the
  target, constants, bang-bang, random), two ways:

  solve_batched    (the default) every start of every example is a row of flat float64 torch arrays,
                   updated in slices of `chunk` rows (bounded memory; the slow tail of each phase runs once):
                   1. box-constrained iLQR from every start, once without and once with heavy initial damping:
                      the closed-loop forward pass keeps the trajectory near the heavily weighted target, so
                      most rows settle in ~10 iterations; the damped copy starts like gradient descent and finds
                      the low optima that ride the system's own swing (each setting alone misses ~0.3% of the
                      pendulum optima scipy finds from the same starts). Rows far behind their example's best stop.
                   2. the best few distinct rows of each example are polished by projected Newton with exact
                      Hessians (cost_hess) and a second-order correction of the terminal state, to a tight KKT point.
                   The cost has long curved valleys (curvature ~1e7 along the terminal state against 0.02 along
                   the controls), where first-order methods and plain Newton crawl (L-BFGS-B takes up to ~1000
                   iterations); the correction lets Newton follow them in ~50-200. ~23 CPU-ms a pendulum example.
  solve_reference  (control_reference.py) one example at a time by scipy's L-BFGS-B on plain floats with a
                   hand-written adjoint: an independent reference (prepare.py --solver=scipy, --verify),
                   ~0.55 CPU-s a pendulum example.

    u, stats = solve_split(system, x0, target, seed=[1337, 0])       # [N, H, m] float64
"""
import multiprocessing
import time

import numpy as np
import torch
from tqdm import tqdm

from control import clip_controls, cost, rollout, step


# ----------------------------------------------------------------------------- LQR (linear)

def riccati(A, B, Q, R, Qf, H, c):
    """Finite-horizon LQR in error coordinates e = x - x*, where e' = A e + B u + c (c [N, n] is
    the affine term, (A - I) x* for a linear system). The value is V_t(e) = e'P_t e + 2 p_t'e + const
    and the optimal control u_t = -K_t e_t - k_t. A [n, n], B [n, m] are shared, or per example
    [N, n, n], [N, n, m]. Returns K [H, m, n] (or [N, H, m, n]) and k [N, H, m]."""
    T = lambda M: np.swapaxes(M, -1, -2)
    col = lambda v: v[..., None]
    P, p = Qf, np.zeros(c.shape)
    K, k = [], []
    for t in reversed(range(H)):
        S = R + T(B) @ P @ B
        Kt = np.linalg.solve(S, T(B) @ P @ A)
        kt = np.linalg.solve(S, T(B) @ (P @ col(c) + col(p)))[..., 0]     # S^-1 B'(P c + p), per row
        Acl = A - B @ Kt
        w = P @ (col(c) - B @ col(kt)) + col(p)                             # P (c - B k) + p
        p = (T(Kt) @ R @ col(kt) + T(Acl) @ w)[..., 0]                      # K'R k + Acl'(P (c - B k) + p)
        P = Q + T(Kt) @ R @ Kt + T(Acl) @ P @ Acl
        P = 0.5 * (P + T(P))
        K.insert(0, Kt)
        k.insert(0, kt)
    return np.stack(K, axis=-3), np.stack(k, axis=1)


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


# ----------------------------------------------------------------------------- nonlinear: the starts

def lqr_baseline(system, x0, target):
    """Clipped closed-loop LQR on the linearisation at (x*, u=0) of each example, x0 and target [N, n]
    (numpy) -> u [N, H]: e' ~ A e + B u + c with c = step(x*, 0) - x*, solved by the same affine
    Riccati recursion as the linear system."""
    eps, H = 1e-6, system['horizon']
    xs = torch.as_tensor(np.asarray(target, dtype=np.float64))
    N, n = xs.shape
    f = lambda x, u: step(system, x, torch.full((N, 1), u, dtype=torch.float64))
    A = torch.stack([(f(xs + eps * d, 0.0) - f(xs - eps * d, 0.0)) / (2 * eps) for d in torch.eye(n, dtype=torch.float64)], dim=2)
    B = ((f(xs, eps) - f(xs, -eps)) / (2 * eps))[:, :, None]
    c = f(xs, 0.0) - xs
    K, k = riccati(A.numpy(), B.numpy(), np.array(system['Q']), np.array(system['R']), np.array(system['Qf']), H, c.numpy())
    K, k = torch.from_numpy(K), torch.from_numpy(k)
    x, us = torch.as_tensor(np.asarray(x0, dtype=np.float64)), []
    for t in range(H):
        u = clip_controls(system, -(K[:, t] @ (x - xs)[:, :, None])[:, :, 0] - k[:, t])
        us.append(u[:, 0])
        x = step(system, x, u)
    return torch.stack(us, dim=1).numpy()


def make_starts(system, u_lqr, n, rng):
    """n initial guesses for one example: zero, the clipped LQR baseline, constants at +-0.2 and +-0.5 of the
    bound, a full kick either way then coasting, +-bang-bang switching at H/5, 2H/5, 3H/5 (swings either way),
    then uniform random. The pendulum has many local optima (swing direction, number of pumps, going round
    the long way): one start finds the best of 40 in only ~70% of examples, and 14 starts missed a
    long-way-round optimum (24x cheaper, reached only from a small constant) in 1 of 100 verified examples;
    the small constants were added for it."""
    H, lo, hi = system['horizon'], system['u_min'][0], system['u_max'][0]
    kick = np.r_[1.0, np.zeros(H - 1)]
    starts = [np.zeros(H), u_lqr, *(np.full(H, f * b) for f in (0.2, 0.5) for b in (hi, lo)), hi * kick, lo * kick]
    for k in (H // 5, 2 * H // 5, 3 * H // 5):
        bang = np.where(np.arange(H) < k, hi, lo).astype(float)
        starts += [bang, lo + hi - bang]
    starts += [rng.uniform(lo, hi, H) for _ in range(max(0, n - len(starts)))]
    return starts[:n]


def bang_bang_starts(system):
    """Full force one way, then the other, switching after every step but the three make_starts has: these
    reach optima with all but one or two controls on a bound that no other start finds (solve_batched's)."""
    H, lo, hi = system['horizon'], system['u_min'][0], system['u_max'][0]
    have = (H // 5, 2 * H // 5, 3 * H // 5)
    bang = [np.where(np.arange(H) < k, hi, lo).astype(float) for k in range(1, H) if k not in have]
    return np.array(bang + [lo + hi - b for b in bang])


# ----------------------------------------------------------------------------- nonlinear: batched in torch

def sym2(system, key, like):
    """M + M' of a cost matrix (the gradient of e'Me is (M + M')e)."""
    M = torch.as_tensor(system[key], dtype=like.dtype)
    return M + M.T


def step_derivs(system, xs, u, lam=None):
    """Derivatives of step() at every (x_t, u_t) of trajectories xs [B, H+1, n], u [B, H] (m = 1), by
    autograd on all B*H steps at once: A [B, H, n, n], b [B, H, n]; with lam [B, H, n] (the adjoint at
    t+1) also the Hessian of lam' step in z = (x, u), [B, H, n+1, n+1]."""
    B, H = u.shape
    n = xs.shape[2]
    with torch.enable_grad():
        z = torch.cat([xs[:, :-1], u[:, :, None]], dim=2).reshape(B * H, n + 1).requires_grad_()
        F = step(system, z[:, :n], z[:, n:])
        jac = torch.stack([torch.autograd.grad(F[:, i].sum(), z, retain_graph=True)[0] for i in range(n)], dim=1)
        jac = jac.view(B, H, n, n + 1)
        if lam is None:
            return jac[..., :n], jac[..., n], None
        gz, = torch.autograd.grad((lam.reshape(B * H, n) * F).sum(), z, create_graph=True)
        M = torch.stack([torch.autograd.grad(gz[:, i].sum(), z, retain_graph=i < n)[0] for i in range(n + 1)], dim=1)
    return jac[..., :n], jac[..., n], M.view(B, H, n + 1, n + 1)


def cost_hess(system, x0, target, u):
    """J [B], gradient [B, H] and exact Hessian [B, H, H] of controls u [B, H] (m = 1), plus the terminal
    state x_H [B, n] and its sensitivity dx_H/du [B, n, H]. The gradient is the adjoint; the Hessian is
    sum_t Z_t' W_t Z_t with Z_t = d(x_t, u_t)/du the forward sensitivities and W_t the stage cost's Hessian
    plus the adjoint-weighted Hessian of step() (~8 gradients' cost, against ~40 for autograd's)."""
    B, H = u.shape
    n = x0.shape[1]
    xs = rollout(system, x0, u[:, :, None])
    J = cost(system, xs, u[:, :, None], target)
    Q2, R2, Qf2 = (sym2(system, k, u) for k in ('Q', 'R', 'Qf'))
    A, b, _ = step_derivs(system, xs, u)
    e = xs - target[:, None]
    lam, g = [e[:, H] @ Qf2], [None] * H  # lam_t = dJ/dx_t, backwards
    for t in reversed(range(H)):
        g[t] = R2[0, 0] * u[:, t] + (lam[0] * b[:, t]).sum(1)
        lam.insert(0, e[:, t] @ Q2 + (lam[0][:, None, :] @ A[:, t])[:, 0])
    _, _, M = step_derivs(system, xs, u, torch.stack(lam[1:], dim=1))
    W = torch.zeros(B, H + 1, n + 1, n + 1, dtype=u.dtype)
    W[:, :H] = M
    W[:, :H, :n, :n] += Q2
    W[:, :H, n, n] += R2[0, 0]
    W[:, H, :n, :n] = Qf2
    Z = torch.zeros(B, H + 1, n + 1, H, dtype=u.dtype)
    for t in range(H):
        Z[:, t, n, t] = 1.0
        Z[:, t + 1, :n] = A[:, t] @ Z[:, t, :n]
        Z[:, t + 1, :n, t] += b[:, t]
    Zf = Z.view(B, (H + 1) * (n + 1), H)
    hess = Zf.transpose(1, 2) @ (W @ Z).view(B, (H + 1) * (n + 1), H)
    return J, torch.stack(g, dim=1), 0.5 * (hess + hess.transpose(1, 2)), xs[:, H], Z[:, H, :n]


# ----------------------------------------------------------------------------- phase 1: box iLQR

def ilqr_iteration(system, x0, target, u, xs, J, mu, alphas=(1.0, 0.5, 0.25, 0.1, 0.03, 0.01)):
    """One iteration of box-constrained iLQR (Tassa et al. 2014, for m = 1) on every row: a backward pass
    on the linearised dynamics and quadratic cost gives open-loop steps k (clamped to the box) and
    feedback gains K (zero where clamped); the forward pass rolls out u + alpha k + K (x - x_old) in closed
    loop, alpha = 1 first and smaller ones for the rows where the cost did not drop enough. mu [B] damps
    the control Hessian. xs [B, H+1, n] is the trajectory of u. Returns (u, xs, J, accepted)."""
    B, H = u.shape
    lo, hi = system['u_min'][0], system['u_max'][0]
    A, b, _ = step_derivs(system, xs, u)
    Q2, R2, Qf2 = (sym2(system, k, u) for k in ('Q', 'R', 'Qf'))
    r2 = R2[0, 0].item()
    e = xs - target[:, None]
    Vx, Vxx = e[:, H] @ Qf2, Qf2.expand(B, -1, -1)
    k, K = torch.zeros_like(u), torch.zeros(B, H, x0.shape[1], dtype=u.dtype)
    dV1, dV2 = torch.zeros_like(J), torch.zeros_like(J)  # expected change: alpha dV1 + alpha^2 dV2
    for t in reversed(range(H)):
        At, bt = A[:, t], b[:, t]
        Vb = (Vxx @ bt[:, :, None])[:, :, 0]
        Qx = e[:, t] @ Q2 + (Vx[:, None, :] @ At)[:, 0]
        Qu = r2 * u[:, t] + (Vx * bt).sum(1)
        Quu = r2 + (bt * Vb).sum(1)
        Qux = (Vb[:, None, :] @ At)[:, 0]
        Qr = Quu + mu
        u_free = u[:, t] - Qu / Qr
        kt = u_free.clamp(lo, hi) - u[:, t]
        inside = ((u_free > lo) & (u_free < hi)).to(u.dtype)
        Kt = -Qux * (inside / Qr)[:, None]
        k[:, t], K[:, t] = kt, Kt
        # V = Q at u + k + K dx; with K = -Qux / Qr its Hessian is Qxx + c Qux Qux'
        Vx = Qx + Kt * (Quu * kt + Qu)[:, None] + Qux * kt[:, None]
        c = inside * (Quu / Qr - 2) / Qr
        Vxx = Q2 + At.transpose(1, 2) @ Vxx @ At + c[:, None, None] * Qux[:, :, None] * Qux[:, None, :]
        dV1, dV2 = dV1 + kt * Qu, dV2 + 0.5 * kt * kt * Quu
    u_new, xs_new, J_new = u.clone(), xs.clone(), J.clone()
    accepted = torch.zeros(B, dtype=torch.bool)
    rows = torch.arange(B)
    for alpha in alphas:
        x, ur, kr, Kr, xr = x0[rows], u[rows], alpha * k[rows], K[rows], xs[rows]
        xl, ul = [x], []
        for t in range(H):
            ut = (ur[:, t] + kr[:, t] + (Kr[:, t] * (x - xr[:, t])).sum(1)).clamp(lo, hi)
            x = step(system, x, ut[:, None])
            xl.append(x)
            ul.append(ut)
        un, xn = torch.stack(ul, dim=1), torch.stack(xl, dim=1)
        Jn = cost(system, xn, un[:, :, None], target[rows])
        expected = -(alpha * dV1[rows] + alpha * alpha * dV2[rows])
        ok = (Jn < J[rows]) & (J[rows] - Jn >= 1e-4 * expected.clamp_min(0))
        u_new[rows[ok]], xs_new[rows[ok]], J_new[rows[ok]], accepted[rows[ok]] = un[ok], xn[ok], Jn[ok], True
        rows = rows[~ok]
        if not len(rows):
            break
    return u_new, xs_new, J_new, accepted


# ----------------------------------------------------------------------------- phase 2: projected Newton

def box_newton_step(Hs, g, u, act, mu, lo, hi):
    """Projected Newton step with Levenberg damping mu [B]: the active variables (act) go onto their bound,
    the free ones minimise the quadratic model given that move; free variables the step would push through
    a bound go onto it too and the rest is solved again, until none does (a clipped step is a poor one:
    variables that flip on and off a bound otherwise stall Newton for hundreds of iterations).
    Returns (d, free, positive definite)."""
    bound = torch.where(g > 0, lo, hi)
    eye = torch.eye(u.shape[1], dtype=u.dtype)
    for _ in range(u.shape[1]):
        free = (~act).to(u.dtype)
        dA = torch.where(act, bound - u, 0.0)
        Hf = Hs * free[:, :, None] * free[:, None, :] + torch.diag_embed(1 - free) + mu[:, None, None] * eye * free[:, :, None]
        L, info = torch.linalg.cholesky_ex(Hf)
        rhs = (g + (Hs @ dA[:, :, None])[:, :, 0]) * free
        d = dA - torch.cholesky_solve(rhs[:, :, None], L)[:, :, 0]
        cross = ~act & ((u + d < lo) | (u + d > hi))
        if not cross.any():
            break
        bound = torch.where(cross, torch.where(u + d < lo, lo, hi), bound)
        act = act | cross
    return d, free, info == 0


def newton_iteration(system, x0, target, u, mu, gtol=1e-9, eps0=1e-3, tau=1e-6, max_trials=12, mu_max=1e6):
    """One iteration of projected Newton (Bertsekas 1982: variables within eps of a bound with the gradient
    pushing out are held on it) with trust-region-like Levenberg damping mu [B] (nan: not set yet) and a
    second-order correction: after a trial step, the terminal state's deviation from its linear prediction
    is removed by a least-norm move of the free controls, which keeps the step in the valley of the heavy
    terminal cost. Up to max_trials damping increases per iteration reuse one Hessian.
    Returns (u, J, mu, done): done where the projected gradient is below gtol * max(1, J), or no step
    decreases J (float64 precision reached)."""
    B, H = u.shape
    lo, hi = torch.full_like(u, system['u_min'][0]), torch.full_like(u, system['u_max'][0])
    J, g, Hs, xH, S = cost_hess(system, x0, target, u)
    scale = Hs.diagonal(dim1=1, dim2=2).abs().amax(1)
    mu = torch.where(torch.isnan(mu), tau * scale, mu)
    pg = (u - (u - g).clamp(lo, hi)).abs().amax(1)
    done = pg <= gtol * J.clamp_min(1.0)
    eps = pg.clamp(max=eps0)[:, None]
    act = ((u <= lo + eps) & (g > 0)) | ((u >= hi - eps) & (g < 0))
    u_new, J_new, accepted = u.clone(), J.clone(), torch.zeros_like(done)
    for _ in range(max_trials):
        r = (~done & ~accepted).nonzero()[:, 0]
        if not len(r):
            break
        d, free, pd = box_newton_step(Hs[r], g[r], u[r], act[r], mu[r], lo[r], hi[r])
        ut = (u[r] + d).clamp(lo[r], hi[r])
        s = ut - u[r]
        pred = -((g[r] * s).sum(1) + 0.5 * (s[:, None, :] @ Hs[r] @ s[:, :, None])[:, 0, 0])
        xs = rollout(system, x0[r], ut[:, :, None])
        Jt = cost(system, xs, ut[:, :, None], target[r])
        # second-order correction: least-norm change of the free controls that undoes the terminal state's
        # deviation from its linear prediction (a 2x2 solve); kept where it lowers J
        delta = xs[:, H] - xH[r] - (S[r] @ s[:, :, None])[:, :, 0]
        SF = S[r] * free[:, None, :]
        SS = SF @ SF.transpose(1, 2)
        SS = SS + (1e-12 * SS.diagonal(dim1=1, dim2=2).sum(1) + 1e-30)[:, None, None] * torch.eye(S.shape[1], dtype=u.dtype)
        uc = (ut - (SF.transpose(1, 2) @ torch.linalg.solve(SS, delta[:, :, None]))[:, :, 0]).clamp(lo[r], hi[r])
        Jc = cost(system, rollout(system, x0[r], uc[:, :, None]), uc[:, :, None], target[r])
        better = Jc < Jt
        ut, Jt = torch.where(better[:, None], uc, ut), torch.where(better, Jc, Jt)
        rho = (J[r] - Jt) / pred.clamp_min(1e-300)
        ok = pd & (pred > 0) & (rho > 1e-4) & (Jt < J[r])
        m = mu[r]
        mu[r] = torch.where(ok, torch.where(rho > 0.9, m / 10, torch.where(rho > 0.75, m / 3, torch.where(rho > 0.25, m, m * 4))),
                            m * 4).clamp_min(1e-12 * scale[r])
        u_new[r[ok]], J_new[r[ok]], accepted[r[ok]] = ut[ok], Jt[ok], True
    stalled = ~done & ~accepted & (mu > mu_max * scale)
    return u_new, J_new, mu, done | stalled


# ----------------------------------------------------------------------------- the solver

def per_example_min(J, ex, N):
    return torch.full((N,), float('inf'), dtype=J.dtype).scatter_reduce(0, ex, J, 'amin')


@torch.no_grad()
def solve_batched(system, x0, target, seed, restarts=18, index0=0, num_proc=1, mu0=(0.0, 100.0),
                  ilqr_iters=30, ilqr_tol=1e-4, prune_after=20, prune_margin=1.0, keep=3, keep_margin=0.1,
                  newton_iters=300, chunk=32768, progress=True):
    """solve_reference for all examples (x0, target [N, n], numpy) at once. Example i gets the same
    `restarts` starts (make_starts seeded by [*seed, index0 + i]), each run by iLQR once per initial
    damping in mu0 (heavy damping starts like gradient descent and finds the low optima that follow the
    system's natural swing, none finds all of them) for up to ilqr_iters iterations (until the relative
    decrease is below ilqr_tol, or the start is (1 + prune_margin) times its example's best after
    prune_after iterations); then projected Newton on the best `keep` distinct rows within
    (1 + keep_margin) of each example's best and on the rows still descending after ilqr_iters. num_proc > 1
    splits big batches over processes (one torch thread each: on shared cores threads wait on each other). Returns (u [N, H], J, J_zero, J_lqr, info)."""
    N, H = len(x0), system['horizon']
    if num_proc > 1 and N >= 1000 * num_proc:
        shards = np.array_split(np.arange(N), num_proc)
        kw = dict(restarts=restarts, mu0=mu0, ilqr_iters=ilqr_iters, ilqr_tol=ilqr_tol, prune_after=prune_after,
                  prune_margin=prune_margin, keep=keep, keep_margin=keep_margin, newton_iters=newton_iters, chunk=chunk)
        tasks = [(system, x0[s], target[s], seed, dict(kw, index0=index0 + s[0], progress=progress and k == 0))
                 for k, s in enumerate(shards)]
        with multiprocessing.get_context('spawn').Pool(num_proc) as pool:  # spawn: no OpenMP state forked
            res = pool.map(_solve_shard, tasks)
        info = {k: sum(r[4][k] for r in res) for k in res[0][4]}
        return (*(np.concatenate([r[i] for r in res]) for i in range(4)), info)

    f64 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))
    x0t, tgt = f64(x0).reshape(N, -1), f64(target).reshape(N, -1)
    t0 = time.process_time()
    u_lqr = lqr_baseline(system, x0t.numpy(), tgt.numpy())
    starts = [make_starts(system, u_lqr[i], restarts, np.random.default_rng([*seed, index0 + i])) for i in range(N)]
    total = lambda x, t, u: cost(system, rollout(system, x, u[:, :, None]), u[:, :, None], t)
    Jz, Jl = total(x0t, tgt, torch.zeros(N, H, dtype=torch.float64)), total(x0t, tgt, f64(u_lqr).reshape(N, H))
    info = dict(setup_cpu_seconds=round(time.process_time() - t0, 2))
    if not N:
        return np.zeros((0, H)), np.zeros(0), Jz.numpy(), Jl.numpy(), info

    # phase 1: iLQR on every start of every example, once per initial damping, and on the extra bang-bang
    # starts undamped
    extra = f64(bang_bang_starts(system))
    S = restarts * len(mu0) + len(extra)
    ex = torch.arange(N).repeat_interleave(S)
    u = torch.cat([f64(np.array(starts)).repeat_interleave(len(mu0), dim=1), extra.expand(N, -1, -1)], dim=1).reshape(N * S, H)
    mu = torch.cat([torch.tensor(mu0, dtype=torch.float64).repeat(restarts), torch.zeros(len(extra), dtype=torch.float64)]).repeat(N)
    xs = torch.cat([rollout(system, x0t[ex[r]], u[r, :, None]) for r in torch.arange(N * S).split(chunk)])
    J = torch.cat([cost(system, xs[r], u[r, :, None], tgt[ex[r]]) for r in torch.arange(N * S).split(chunk)])
    live, row_iters, t0 = torch.arange(N * S), 0, time.process_time()
    bar = tqdm(range(ilqr_iters), desc=f"{system['name']} iLQR ({N} examples x {S} starts)", disable=not progress)
    for it in bar:
        row_iters += len(live)
        stop = torch.zeros(len(live), dtype=torch.bool)
        for i, r in zip(torch.arange(len(live)).split(chunk), live.split(chunk)):
            un, xn, Jn, ok = ilqr_iteration(system, x0t[ex[r]], tgt[ex[r]], u[r], xs[r], J[r], mu[r])
            dec = (J[r] - Jn) / J[r].clamp_min(1.0)
            u[r], xs[r], J[r] = un, xn, Jn
            mu[r] = torch.where(ok, mu[r] / 4, (mu[r] * 8).clamp_min(1e-6))
            stop[i] = (ok & (dec < ilqr_tol)) | (mu[r] > 1e8)
        if it + 1 >= prune_after:  # a start far behind its example's best is not worth more iterations
            stop |= J[live] > per_example_min(J, ex, N)[ex[live]] * (1 + prune_margin)
        live = live[~stop]
        bar.set_postfix(live=len(live))
        if not len(live):
            break
    info.update(ilqr_row_iters=row_iters, ilqr_unfinished=len(live), ilqr_cpu_seconds=round(time.process_time() - t0, 2))

    # phase 2: projected Newton on the best few distinct rows of each example, and on the rows still
    # descending when phase 1 ended (slow valleys lead to some of the best optima)
    keep = min(keep, S)
    order = J.view(N, S).argsort(dim=1)[:, :keep]
    Jk, uk = J.view(N, S).gather(1, order), u.view(N, S, H)[torch.arange(N)[:, None], order]
    pick = Jk <= Jk[:, :1] * (1 + keep_margin)
    for a in range(1, keep):  # the same optimum reached from two starts is polished once
        for b in range(a):
            same = ((uk[:, a] - uk[:, b]).abs().amax(1) < 1e-3) & ((Jk[:, a] - Jk[:, b]).abs() <= 1e-6 * Jk[:, b])
            pick[:, a] &= ~(same & pick[:, b])
    polish = torch.zeros(N * S, dtype=torch.bool)
    polish[(order + torch.arange(N)[:, None] * S)[pick]] = True
    polish[live] = True
    ex2, u2, J2 = ex[polish], u[polish], J[polish]
    mu2 = torch.full_like(J2, float('nan'))
    live, row_iters, t0 = torch.arange(len(u2)), 0, time.process_time()
    bar = tqdm(range(newton_iters), desc=f"{system['name']} Newton ({len(u2)} rows)", disable=not progress)
    for it in bar:
        row_iters += len(live)
        stop = torch.zeros(len(live), dtype=torch.bool)
        for i, r in zip(torch.arange(len(live)).split(chunk // 4), live.split(chunk // 4)):
            u2[r], J2[r], mu2[r], stop[i] = newton_iteration(system, x0t[ex2[r]], tgt[ex2[r]], u2[r], mu2[r])
        live = live[~stop]
        bar.set_postfix(live=len(live))
        if not len(live):
            break
    info.update(newton_rows=len(u2), newton_row_iters=row_iters, newton_unfinished=len(live),
                newton_cpu_seconds=round(time.process_time() - t0, 2))

    best = torch.zeros(N, dtype=torch.long)  # a row of each example with its lowest J
    is_best = J2 == per_example_min(J2, ex2, N)[ex2]
    best[ex2[is_best]] = is_best.nonzero()[:, 0]
    return u2[best].numpy(), J2[best].numpy(), Jz.numpy(), Jl.numpy(), info


def _solve_shard(task):
    system, x0, target, seed, kw = task
    torch.set_num_threads(1)
    return solve_batched(system, x0, target, seed, **kw)


# ----------------------------------------------------------------------------- every example of a split

def solve_split(system, x0, target, seed, restarts=18, num_proc=1, solver='torch'):
    """Optimal controls [N, H, m] (float64) of examples (x0, target) and the solver's stats; a nonlinear system
    solves each example from `restarts` starts, seeded by [*seed, i]: solver='torch' all examples at once
    (solve_batched), 'scipy' one by one by L-BFGS-B (solve_reference); both in num_proc processes."""
    name = system['name']
    if 'A' in system:
        mats = [np.array(system[k], dtype=np.float64) for k in ('A', 'B', 'Q', 'R', 'Qf')]
        u = lqr_riccati(*mats, system['horizon'], x0, target)
        gap = np.abs(u - lqr_closed_form(*mats, system['horizon'], x0, target)).max() if len(x0) else 0.0
        if gap > 1e-6:
            raise ValueError(f"Riccati and closed-form LQR disagree by {gap:.2e}; the system matrices are ill-conditioned")
        return u, {'riccati_vs_closed_form_max_abs': float(gap)}
    if solver not in ('torch', 'scipy'):
        raise ValueError(f"unknown solver {solver!r}; choose torch or scipy")
    if not len(x0):
        return np.zeros((0, system['horizon'], 1)), {}
    if solver == 'torch':
        u, J, Jz, Jl, info = solve_batched(system, x0, target, seed, restarts, num_proc=num_proc)
        stats = {'newton_unconverged': info['newton_unfinished']}
    else:
        tasks = [(system, x0[i], target[i], restarts, [*seed, i]) for i in range(len(x0))]
        from control_reference import run_reference  # here, not at the top: control_reference imports this module
        res = run_reference(tasks, num_proc, f'{name} L-BFGS-B')
        u = np.stack([r[0] for r in res])
        J, Jz, Jl = (np.array([r[i] for r in res]) for i in (1, 2, 3))
        stats = {}
    return u[:, :, None], {'mean_J_over_J_zero': float(np.mean(J / Jz)), 'mean_J_over_J_lqr_clipped': float(np.mean(J / Jl)),
                           'frac_beats_lqr_clipped': float(np.mean(J <= Jl + 1e-9)), **stats}
