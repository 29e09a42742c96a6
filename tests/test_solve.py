"""Tests of solve.py: one puzzle's answer per step with a rule verdict, control rollouts against the optimum."""
import os
import subprocess
import sys

from conftest import ROOT


def run_solve(cwd, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'solve.py'), '--out_dir=out', *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_puzzle_checkpoint_prints_the_answer_per_step_and_a_rule_verdict(sudoku_run):
    import numpy as np
    import puzzle_io
    import puzzles
    x = np.load(sudoku_run / 'data' / 'sudoku_tiny' / 'test_inputs.npy')[0]
    text = ''.join('.' if t == 1 else str(t - 1) for t in x)
    proc = run_solve(sudoku_run, '--out_dir=sudoku', f'--puzzle={text}', '--puzzle_steps=True')
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert 'sudoku puzzle:' in out and 'answer after supervision step 1 of 2' in out and 'halting:' in out
    lines = out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith('answer after supervision step 2 of 2'))
    grid, verdict = '\n'.join(lines[i + 1:i + 12]), lines[i + 12]
    answer, _ = puzzle_io.parse_puzzle('sudoku', grid.replace('|', '').replace('-', '').replace('+', ''))
    # the verdict checks the rules on the printed answer (no stored solution involved)
    assert verdict.startswith('valid' if puzzles.sudoku_valid(x, answer) else 'invalid'), out
    # by default one answer: the halting step's (never halting, --halt_threshold=1.0: the last step's)
    for threshold, step in ((0.0, 1), (1.0, 2)):  # sigmoid(q) > 0 at step 1 for every puzzle / never
        out = run_solve(sudoku_run, '--out_dir=sudoku', f'--puzzle={text}', f'--halt_threshold={threshold}').stdout
        assert out.count('answer after supervision step') == 1 and f'answer after supervision step {step} of 2' in out
        assert ('first at step 1 of 2' if step == 1 else 'never exceeds 1.0') in out, out


def test_bad_puzzle_is_one_clear_error(sudoku_run):
    proc = run_solve(sudoku_run, '--out_dir=sudoku', '--puzzle=12345678x')
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'x'" in lines[0] and '81 characters' in lines[0], proc.stderr


def test_control_rollout_prints_and_plots(control_run):
    out = control_run / 'out'
    proc = run_solve(control_run, '--num_samples=2', '--x0=1.5,0', f'--plot={out / "di.png"}')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('double_integrator ') == 2 and proc.stdout.count(': ratio ') == 2
    assert proc.stdout.count('x0 [  1.500   0.000]') == 2  # the given start, random targets
    ratios = [float(w) for w in proc.stdout.split('mean cost ratio per supervision step: ')[1].split()[:2]]
    assert len(ratios) == 2 and all(r >= 1.0 - 1e-6 for r in ratios)
    png = (out / 'di.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10000


def test_control_bad_state_is_one_clear_error(control_run):
    proc = run_solve(control_run, '--x0=1,2,3')
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "--x0='1,2,3' must be 2 comma-separated numbers" in lines[0]
    proc = run_solve(control_run, '--num_samples=0')
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and lines == ['error: num_samples=0: must be >= 1']


def test_language_model_checkpoint_points_to_sample(run_dir):
    from conftest import run_train
    run_train(run_dir, '--out_dir=out', '--max_iters=1', '--eval_interval=1')
    lines = run_solve(run_dir).stderr.strip().splitlines()
    assert len(lines) == 1 and 'python sample.py --out_dir=out' in lines[0]
