import os
import subprocess
import sys

from conftest import ROOT, run_train


def run_sample(cwd, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'sample.py'), '--out_dir=out', *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_sample_from_a_tiny_trained_checkpoint(run_dir):
    run_train(run_dir, '--out_dir=out', '--max_iters=3', '--eval_interval=3', '--n_sup=3', '--T_recursion=2')
    (run_dir / 'prompt.txt').write_text('All:\n')
    proc = run_sample(run_dir, '--start=FILE:prompt.txt', '--num_samples=2', '--max_new_tokens=40',
                      '--halt_threshold=0.5', '--n_sup_inference=2')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('All:\n') >= 2
    assert proc.stdout.count('supervision steps per token') == 2 and 'of 2' in proc.stdout


def test_prompt_with_unknown_characters_is_one_clear_error(run_dir):
    run_train(run_dir, '--out_dir=out', '--max_iters=1', '--eval_interval=1')
    proc = run_sample(run_dir, '--start=Zebra ~ ROMEO')
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'~'" in lines[0] and "'Z'" in lines[0]


def test_missing_checkpoint_is_one_clear_error(tmp_path):
    proc = run_sample(tmp_path)
    assert proc.returncode != 0 and 'train first' in proc.stderr.strip()


def test_puzzle_checkpoint_points_to_solve(sudoku_run):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'sample.py'), '--out_dir=sudoku'], cwd=sudoku_run,
                          capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and 'python solve.py --out_dir=sudoku' in lines[0]

