import os
import pickle
import re
import subprocess
import sys

from conftest import ROOT, run_train


def bench(cwd, *args):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'bench.py'), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, WANDB_MODE='disabled'))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_sampling_bench_reports_cache_and_halting(run_dir):
    run_train(run_dir, '--out_dir=out', '--max_iters=2', '--eval_interval=2', '--n_sup=3')
    out = bench(run_dir, '--sample=True', '--compile=False', '--out_dir=out', '--n_tokens=40', '--repeats=1',
                '--val_sequences=2', '--val_length=20', '--halt_threshold=0.0')
    assert re.search(r'KV cache +[\d.]+ tokens/s +\([\d.]+x\)', out)
    # threshold 0: every token halts after its first step, prefills (the prompt, the window refilled when it
    # slides past block_size) included
    assert float(re.search(r'steps per token ([\d.]+) of 3', out).group(1)) == 1.0
    assert re.search(r'halting at 0\.0 +[\d.]+ \([-+][\d.]+%\), steps per token 1\.00 -> 66\.7% fewer', out)
    bad = subprocess.run([sys.executable, os.path.join(ROOT, 'bench.py'), '--sample=True', '--n_tokens=0'],
                         cwd=run_dir, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines() == ['error: n_tokens=0: must be >= 1']


def test_halting_curve_sweeps_thresholds_over_checkpoints(run_dir):
    run_train(run_dir, '--out_dir=out', '--max_iters=2', '--eval_interval=2', '--n_sup=3')
    run_train(run_dir, '--out_dir=plain', '--max_iters=2', '--eval_interval=2', '--recursion=False')
    out = bench(run_dir, '--halting=out,plain', '--halt_thresholds=0.0', '--val_sequences=2', '--val_length=20',
                '--plot_path=curve.png')
    rows = [line.split('|')[1:-1] for line in out.splitlines() if line.startswith('| out') or line.startswith('| plain')]
    # (model, steps run, threshold, steps per token, block calls per token): 1 layer x 2 net calls per step
    assert [[c.strip() for c in r[:5]] for r in rows] == [['out', '1', 'never', '1.00', '2.00'],
                                                        ['out', '2', 'never', '2.00', '4.00'],
                                                        ['out', '3', 'never', '3.00', '6.00'],
                                                        ['out', '3', '0.0', '1.00', '2.00'],
                                                        ['plain', '1', 'never', '1.00', '1.00']], out
    # halting at step 1 (threshold 0) is running one step
    assert rows[0][5] == rows[3][5] and rows[2][6].strip() == '+0.00%'
    assert (run_dir / 'curve.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_training_throughput_table_vs_and_profile(run_dir):
    from configurator import configure, train_defaults
    from model import GPT, GPTConfig
    (run_dir / 'plain.py').write_text("recursion = False\n")
    model_args = ['--dataset=tiny', '--batch_size=2', '--block_size=16', '--n_layer=1', '--n_head=2',
                  '--n_kv_head=1', '--n_embd=32', '--n_sup=2', '--compile=False', '--dtype=float32']
    out = bench(run_dir, *model_args, '--warmup=1', '--steps=1', '--rounds=1', '--peak_n=512', '--vs=plain.py',
                '--profile=True')
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r'^\| ([AB] eager) \| [\d.]+M \| ([\d.,]+) \| ([\d,]+) \| ([\d.]+) \| ([\d.]+)% \| ([\d,]+) MiB', out, re.M)}
    assert set(rows) == {'A eager', 'B eager'}, out
    peak = float(re.search(r'against float32 \(([\d.]+) GFLOP/s\)', out).group(1))
    from common import native_bf16  # peaks are timed only in dtypes the device runs natively
    assert ('bfloat16' in re.search(r'measured matmul peak: (.*)', out).group(1)) == native_bf16('cpu')
    with open(run_dir / 'data' / 'tiny' / 'meta.pkl', 'rb') as f:
        vocab = pickle.load(f)['vocab_size']
    flops = {}
    for name, argv in (('A eager', model_args), ('B eager', [str(run_dir / 'plain.py')] + model_args)):
        c = configure(train_defaults(), argv)  # as train.py would build it
        flops[name] = GPT(GPTConfig(**{k: c[k] for k in GPTConfig.keys() if k in c}, vocab_size=vocab)).flops_per_token()
        mflops_token, tok_s, gflop_s, mfu, mem = rows[name]
        assert abs(float(mflops_token.replace(',', '')) - flops[name] / 1e6) < 0.006
        assert float(tok_s.replace(',', '')) > 0 and int(mem.replace(',', '')) > 50
        assert abs(float(mfu) - 100 * float(gflop_s) / peak) <= 0.006 + 100 * 0.006 / peak + 0.01 * float(mfu)  # all rounded
    ratio = float(re.search(r'B / A \(eager\): tokens/s [\d.]+x, FLOPs/token ([\d.]+)x', out).group(1))
    assert abs(ratio - flops['B eager'] / flops['A eager']) < 1e-3 and ratio < 0.5  # recursion off: 1 net call, not 2 x 2
    assert 'top operators by self time' in out and 'aten::mm' in out


def test_throughput_table_times_a_control_model(control_run):
    # bench.py derives a control model as train.py does (features in, controls out, horizon positions)
    from conftest import CONTROL
    args = [a for a in CONTROL if a.split('=')[0] in ('--dataset', '--n_layer', '--n_head', '--n_kv_head', '--n_embd',
                                                      '--n_sup', '--batch_size', '--dtype')]
    out = bench(control_run, *args, '--compile=False', '--warmup=1', '--steps=1', '--rounds=1', '--peak_n=512')
    row = re.search(r'^\| config eager \| [\d.]+M \| ([\d.,]+) \| ([\d,]+) \|', out, re.M)
    assert row and float(row.group(1)) > 0 and int(row.group(2).replace(',', '')) > 0, out


def test_presets_table_is_the_estimate_train_py_refuses_by():
    import torch
    import lm
    from common import train_memory
    from configurator import configure, train_defaults
    from model import GPT, GPTConfig
    out = bench(ROOT, '--presets=True')
    rows = re.findall(r'^\| (\w+) \| [\d.]+M \| [\d.]+M \| [\d.]+ \| ([\d.]+) GiB \| ([\d.]+) GiB \| (\d+) / (\d+) / (\d+) \|$',
                      out, re.M)
    assert len(rows) == 8, out
    name, act, state, *fits = rows[0]
    c = configure(train_defaults(), [os.path.join(ROOT, 'config', f'{name}.py')])
    with torch.device('meta'):
        m = GPT(GPTConfig(**{k: c[k] for k in GPTConfig.keys() if k in c}, vocab_size=lm.GPT2_VOCAB))
    for gb, fit in zip((24, 40, 80), map(int, fits)):  # the largest micro-batch whose estimate fits
        assert train_memory(m, fit, 'bfloat16', c['use_ema']) <= gb * 2 ** 30 < train_memory(m, fit + 1, 'bfloat16', c['use_ema'])


def test_estimate_is_the_flop_count_and_matches_the_gpu_recipes(tmp_path):
    """--estimate prints a run's FLOPs (ablate.flops_per_iter x max_iters), memory and time at fractions of a
    GPU's peak, without compute; the 1-GPU recipes' comments state what it prints for them (the data's format
    fixes the shapes: small generated sets stand in for the public ones)."""
    for script, name in (('sudoku', 'sudoku_extreme'), ('maze', 'maze_hard')):
        subprocess.run([sys.executable, os.path.join(ROOT, 'data', script, 'prepare.py'), '--n_train=2', '--n_test=2',
                        '--difficulty=easy', f'--out_dir={tmp_path / "data" / name}'] + (['--num_proc=1'] if script == 'sudoku' else []),
                       check=True, capture_output=True)
    for cfg in ('sudoku_extreme_1gpu', 'maze_hard_1gpu'):
        path = os.path.join(ROOT, 'config', f'{cfg}.py')
        out = bench(tmp_path, path, '--estimate=True')
        params, per_iter, iters, total, gib = re.search(
            r'^([\d.]+)M params, ([\d.]+) TFLOP per iteration .*?, (\d+) iterations: ([\d.e+]+) FLOP; ~(\d+) GiB', out, re.M).groups()
        assert abs(float(per_iter) * 1e12 * int(iters) / float(total) - 1) < 2e-3
        slow, mid = re.findall(r'% of 989 TFLOP/s: (\w+)', out)[:2]
        with open(path) as f:
            comment = f.read()
        assert f'{params}M params' in comment and f'{float(per_iter):.1f} TFLOP per iteration' in comment
        assert f'{int(iters):,} iterations = {float(total):.3g}'.replace('e+', 'e') + ' FLOP' in comment
        assert f'{slow} at 10%' in comment and f'{mid} at 30%' in comment and f'~{gib} GiB per step' in comment
