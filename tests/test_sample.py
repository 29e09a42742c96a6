import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, make_char_data, one_line_error, run_all, run_train


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
    # the vocabulary travels in the checkpoint: the same text without the dataset's meta.pkl
    (run_dir / 'data' / 'tiny' / 'meta.pkl').unlink()
    again = run_sample(run_dir, '--start=FILE:prompt.txt', '--num_samples=2', '--max_new_tokens=40',
                       '--halt_threshold=0.5', '--n_sup_inference=2')
    assert again.returncode == 0, again.stderr
    assert again.stdout.split('---')[0] == proc.stdout.split('---')[0]


def test_puzzle_checkpoint_points_to_solve(sudoku_run):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'sample.py'), '--out_dir=sudoku'], cwd=sudoku_run,
                          capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and 'python solve.py --out_dir=sudoku' in lines[0]



BAD_SAMPLE = {  # class of bad input: (sample.py arguments, what its one line must say)
    'prompt outside the vocabulary': (['--out_dir=out', '--start=Zebra ~ ROMEO'], "outside the model's vocabulary: ['E', 'O', 'Z', 'b', '~']"),
    'prompt file missing': (['--out_dir=out', '--start=FILE:missing.txt'], 'FILE:missing.txt: No such file'),
    'length out of range': (['--out_dir=out', '--max_new_tokens=-5'], 'max_new_tokens=-5: must be >= 1'),
    'top_k out of range': (['--out_dir=out', '--top_k=0'], 'top_k=0: must be None or >= 1'),
    'negative temperature': (['--out_dir=out', '--temperature=-1'], 'temperature=-1.0: must be >= 0'),
    'no samples': (['--out_dir=out', '--num_samples=0'], 'num_samples=0: must be >= 1'),
    'unknown key': (['--out_dir=out', '--max_tokens=5'], "did you mean 'max_new_tokens'"),
    'unreadable checkpoint': (['--out_dir=truncated'], 'cannot read truncated/ckpt.pt'),
    'missing checkpoint': (['--out_dir=nothing'], 'train first'),
    'memory writes without a memory': (['--out_dir=out', '--memory_write_threshold=2'],
                                       'memory_write_threshold=2 writes to the memory bank, and this model has none (memory_slots=0)'),
    'memory write rate out of range': (['--out_dir=out', '--memory_write_rate=2'], 'memory_write_rate=2.0: must be in [0, 1]'),
}


@pytest.fixture(scope='module')
def bad_sample_runs(tmp_path_factory):
    cwd = tmp_path_factory.mktemp('bad_sample')
    make_char_data(cwd)
    run_train(cwd, '--out_dir=out', '--max_iters=1', '--eval_interval=1')
    shutil.copytree(cwd / 'out', cwd / 'truncated')
    ckpt = cwd / 'truncated' / 'ckpt.pt'
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    return run_all(cwd, BAD_SAMPLE, script='sample.py')


@pytest.mark.parametrize('case', BAD_SAMPLE)
def test_bad_input_is_one_line(bad_sample_runs, case):
    line = one_line_error(bad_sample_runs[case])
    assert line.startswith('error: ') and BAD_SAMPLE[case][1] in line, line
