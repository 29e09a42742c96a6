"""
Optimal-control ground truth for the control tasks: the systems live in control.py, the solvers in
control_solver.py; this script draws the examples and writes them.

  double_integrator  linear, unconstrained: finite-horizon LQR towards a target (backward
                     Riccati recursion in error coordinates with an affine term), checked
                     against the closed form (stacked dynamics, quadratic in u solved directly).
  pendulum,          nonlinear, torque/force-bounded: open-loop optimum of the RK4-discretised
  van_der_pol        problem within the box bounds, best of several starts (zero, clipped LQR on
                     the linearisation, +-constant, +-bang-bang, random). --solver=torch (default):
                     all examples at once, box iLQR then projected Newton; --solver=scipy: one by
                     one by L-BFGS-B with exact adjoint gradients, the winner polished (the
                     reference). --verify measures the gap against scipy.

Writes to --out_dir (default data/control/<system>/):
  meta.json                 the system (control.make_system) + feature layout, sizes, solver,
                            per-split stats (optimum's final error and success, baselines)
  <split>_features.npy      float32 [N, H, 2n+1], row t = [x0, target, t/H]
  <split>_targets.npy       float32 [N, H, m]   optimal controls
  <split>_x0.npy            float32 [N, n]      initial states
  <split>_target.npy        float32 [N, n]      target states
  <split>_opt_cost.npy      float64 [N]         J of the stored (float32) optimal controls

    python data/control/prepare.py                       # every system, default sizes
    python data/control/prepare.py --system=pendulum --n_train=2000 --num_proc=2   # fewer than the default 50,000
    python data/control/prepare.py --system=pendulum --solver=scipy      # the reference solver
    python data/control/prepare.py --system=pendulum --verify=100   # + how good are the optima?
"""
import argparse
import os
import sys
import time

# before numpy loads: BLAS threads make L-BFGS-B on 15 variables ~10x slower; processes parallelise instead
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repo root, for control.py
import control  # noqa: E402
import control_reference  # noqa: E402
import control_solver  # noqa: E402
from common import save_json, save_npy  # noqa: E402

# the pendulum costs ~23 CPU-ms an example with --solver=torch (50,000 in 9m51s with --num_proc=2 on 2 idle cores), ~0.55 CPU-s with scipy
DEFAULT_SIZES = {'double_integrator': (10000, 1000, 1000), 'pendulum': (50000, 1000, 1000), 'van_der_pol': (20000, 1000, 1000)}


def verify(system, x0, target, u, args):
    """Re-solve the first --verify examples with --verify_restarts starts (other random seeds) and
    measure how far the stored optimum u [N, H] is from that reference: gap = J / J_reference - 1."""
    n = min(args.verify, len(x0))
    pb = control_reference.reference_problem(system)
    J = np.array([control_reference.reference_cost(u[i], pb, x0[i], target[i]) for i in range(n)])
    tasks = [(system, x0[i], target[i], args.verify_restarts, [args.seed, 99, i]) for i in range(n)]
    J_ref = np.array([r[1] for r in control_reference.run_reference(tasks, args.num_proc, 'verify')])
    gap = J / np.minimum(J_ref, J) - 1
    return {'verify_n': n, 'verify_restarts': args.verify_restarts, 'verify_frac_within_1e-6': float(np.mean(gap <= 1e-6)),
            'verify_frac_better': float(np.mean(J < J_ref * (1 - 1e-6))),  # the stored optimum beats the reference
            'verify_mean_gap': float(gap.mean()), 'verify_max_gap': float(gap.max())}


def prepare(name, args):
    system = control.make_system(name)
    out_dir = args.out_dir or os.path.join(HERE, name)
    if args.out_dir and args.system == 'all':
        out_dir = os.path.join(args.out_dir, name)
    os.makedirs(out_dir, exist_ok=True)
    sizes = dict(zip(control.SPLITS, DEFAULT_SIZES[name]))
    for s in control.SPLITS:
        if getattr(args, f'n_{s}') is not None:
            sizes[s] = getattr(args, f'n_{s}')
    meta = dict(system, feature_layout='per horizon step t: [x0 (n_state), target (n_state), t/horizon]',
                n_features=2 * system['n_state'] + 1, sizes=sizes, seed=args.seed,
                solver=('finite-horizon LQR (Riccati, checked against closed form)' if name == 'double_integrator'
                        else f'torch batched box iLQR + projected Newton (control_solver.py), best of {args.restarts} starts'
                        if args.solver == 'torch' else
                        f'scipy L-BFGS-B, exact adjoint gradients, best of {args.restarts} starts'),
                stats={})
    t0 = time.time()
    for si, split in enumerate(control.SPLITS):
        rng = np.random.default_rng([args.seed, si])  # each split its own stream: sizes never shift others
        n = sizes[split]
        x0 = control.sample_states(rng, system['x0_low'], system['x0_high'], n)
        target = control.sample_states(rng, system['target_low'], system['target_high'], n)
        try:
            u, stats = control_solver.solve_split(system, x0, target, [args.seed, si], args.restarts, args.num_proc, args.solver)
        except ValueError as e:
            sys.exit(f"error: {e}")
        u32 = u.astype(np.float32)
        J = control.total_cost(system, torch.from_numpy(x0), torch.from_numpy(target),
                               torch.from_numpy(u32.astype(np.float64))).numpy()
        save_npy(os.path.join(out_dir, f'{split}_features.npy'), control.make_features(x0, target, system['horizon']))
        save_npy(os.path.join(out_dir, f'{split}_targets.npy'), u32)
        save_npy(os.path.join(out_dir, f'{split}_x0.npy'), x0.astype(np.float32))
        save_npy(os.path.join(out_dir, f'{split}_target.npy'), target.astype(np.float32))
        save_npy(os.path.join(out_dir, f'{split}_opt_cost.npy'), J)
        if split == 'train' and 'A' not in system and args.verify and n:
            stats.update(verify(system, x0, target, u[:, :, 0], args))
        if n:
            m = control.metrics(system, x0, target, u32, u32)
            stats.update(mean_opt_cost=float(J.mean()), opt_final_err=m['opt_final_err'], opt_success=m['opt_success'])
        meta['stats'][split] = stats
        print(f"{name} {split}: {n} examples " + ' '.join(f'{k}={v:.4g}' for k, v in stats.items()))
    meta['seconds'] = round(time.time() - t0, 2)
    save_json(os.path.join(out_dir, 'meta.json'), meta, indent=1)
    print(f"{name}: wrote {out_dir} in {meta['seconds']:.1f}s")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--system', default='all', choices=[*control.SYSTEMS, 'all'])
    ap.add_argument('--out_dir', default=None, help='default data/control/<system>; with --system=all, <out_dir>/<system>')
    for s in control.SPLITS:
        ap.add_argument(f'--n_{s}', type=int, default=None, help='examples in the split (default per system)')
    ap.add_argument('--seed', type=int, default=1337)
    ap.add_argument('--restarts', type=int, default=18, help='starts per nonlinear example (14 structured, the rest random)')
    ap.add_argument('--solver', default='torch', choices=['torch', 'scipy'],
                    help='nonlinear systems: all examples at once in torch, or one by one by scipy L-BFGS-B (the reference; --verify)')
    ap.add_argument('--verify', type=int, default=0, help='re-solve this many nonlinear train examples by scipy with other starts and report the gap')
    ap.add_argument('--verify_restarts', type=int, default=40)
    ap.add_argument('--num_proc', type=int, default=max(1, (os.cpu_count() or 1)))
    args = ap.parse_args(argv)
    for s in control.SPLITS:
        if getattr(args, f'n_{s}') is not None and getattr(args, f'n_{s}') < 0:
            sys.exit(f"error: --n_{s} must be >= 0")
    if args.restarts < 1 or args.num_proc < 1:
        sys.exit("error: --restarts and --num_proc must be >= 1")
    torch.set_num_threads(1)
    for name in (control.SYSTEMS if args.system == 'all' else [args.system]):
        prepare(name, args)


if __name__ == '__main__':
    main()
