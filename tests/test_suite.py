"""Tests of suite.py: the GPU suite at toy sizes on the CPU, so that a change that breaks it fails here
and not in the next short GPU window."""
import os
import re
import subprocess
import sys

from conftest import ROOT, make_char_data


def test_the_suite_runs_at_toy_sizes_and_prints_one_table(tmp_path):
    make_char_data(tmp_path)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'suite.py'), '--device=cpu', '--tiny=True',
                           '--dataset=tiny'], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, WANDB_MODE='disabled'))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = proc.stdout
    from common import resolve_dtype  # the machine's own: bfloat16 where the CPU does it natively, else float32
    assert re.search(rf"^suite: cpu, torch [\d.]+.*, dtype {resolve_dtype('', 'cpu')}, tiny sizes", out, re.M), out
    table = [line for line in out.splitlines() if line.startswith('| ')]
    names = [line.split(' | ')[0][2:] for line in table[1:]]
    assert names == ['matmul peak', '6 x 384 plain, batch 2', '6 x 384 recursive, batch 2', 'preset A, n_sup 1, batch 2',
                     'preset A, n_sup 8, batch 2', 'Sudoku, faithful mlp_t, batch 2', 'default LM',
                     'sampling, default LM at n_sup 2'], table
    assert 'failed' not in out
    for line in table[2:7]:  # every training row measured something
        tok_s = float(re.search(r'\| ([\d,]+) tokens/s', line).group(1).replace(',', ''))
        assert tok_s > 0 and re.search(r'MFU [\d.]+% of measured peak', line), line
    assert re.search(r'samples x steps/s', table[6])
    assert re.search(r'val loss \d\.\d{4} after 20 iterations', table[7])
    assert re.search(r'KV cache [\d.]+ tokens/s, recompute [\d.]+ \| [\d.]+x', table[8])
    assert (tmp_path / 'data' / 'sudoku_suite' / 'meta.json').exists()
