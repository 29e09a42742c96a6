import os
import re
import subprocess
import sys

from conftest import ROOT, run_train


def test_sampling_bench_reports_cache_and_halting(run_dir):
    run_train(run_dir, '--out_dir=out', '--max_iters=2', '--eval_interval=2', '--n_sup=3')
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'bench.py'), '--out_dir=out', '--n_tokens=40',
                           '--repeats=1', '--val_sequences=2', '--val_length=20', '--halt_threshold=0.0'],
                          cwd=run_dir, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r'KV cache +[\d.]+ tokens/s +\([\d.]+x\)', proc.stdout)
    # threshold 0: every token halts after its first step, except those sampled from a prefill
    # (the prompt, and the window refilled when it slides past block_size), which run all 3
    mean = float(re.search(r'steps per token ([\d.]+) of 3', proc.stdout).group(1))
    assert 1.0 < mean < 1.2
    assert re.search(r'halting at 0\.0 +[\d.]+ \([-+][\d.]+%\), steps per token 1\.00 -> 66\.7% fewer', proc.stdout)
