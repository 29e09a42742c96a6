"""
The GPU suite: one command that spends a short GPU window well and prints one markdown table.

    python data/shakespeare_char/prepare.py && python suite.py       # on a GPU (aimed at < 8 minutes)
    python suite.py --device=cpu --tiny=True --dataset=tiny         # toy sizes in seconds (tests/test_suite.py)

It runs the project's own commands, as a user would, and reads their output: bench.py for training
throughput (tokens/s, MFU against the matmul peak measured in the same run and against the vendor's dense
bf16 peak, peak memory against common.train_memory's estimate) of the plain and recursive 6 x 384 models and
of preset A at the largest micro-batch the estimate fits, at n_sup=1 and at its full n_sup; the paper's
Sudoku model in faithful mode (samples x supervision steps per second); train.py for the default LM's val
loss after a fixed number of iterations; bench.py --sample=True for sampling speed with the KV cache and
without. data/<dataset> (the default LM's) must be prepared in the current folder, as for train.py; the
suite writes a small Sudoku set to data/sudoku_suite and its runs to work_dir.
"""
import json
import os
import re
import subprocess
import sys
import time

import torch

from ablate import derive
from common import available_memory, or_exit, prepare_command, runtime, train_memory
from configurator import DEVICE, at_least, configure, from_command_line, train_defaults
from model import GPT, GPTConfig

# -----------------------------------------------------------------------------
device = ''             # '' = auto: cuda > mps > cpu
tiny = False            # toy sizes: every measurement in seconds on a CPU, so that the suite cannot rot
dataset = 'shakespeare_char'  # the default LM's data (data/<dataset>)
work_dir = 'out-suite'  # the suite's runs
lm_iters = 2000         # the default LM's val loss after this many iterations
# -----------------------------------------------------------------------------
RULES = {'device': DEVICE, 'lm_iters': at_least(1)}
globals().update(from_command_line(globals(), __file__, rules=RULES))
device, device_type, dtype, _ = or_exit(runtime, device, '')
ROOT = os.path.dirname(os.path.abspath(__file__))
# the vendors' dense bf16 tensor-core peaks (TFLOP/s, no sparsity), by device name; the first match counts
VENDOR_BF16_TFLOPS = [('H100 PCIe', 756), ('H100', 989), ('H200', 989), ('A100', 312), ('L40S', 362), ('L4', 121),
                      ('4090', 165)]
# bench.py's rows: | variant | params | MFLOPs/token | tokens/s | GFLOP/s | MFU | peak memory | warm-up |
BENCH_ROW = re.compile(r'^\| config (eager|compiled) \| [\d.]+M \| [\d.,]+ \| ([\d,]+) \| ([\d.,]+) \| ([\d.]+)% \| '
                       r'([\d,]+) MiB \|', re.M)
SMALL = ['--n_layer=1', '--n_embd=32', '--n_head=2', '--n_kv_head=1', '--block_size=32', '--batch_size=2']


def run(script, *args):
    """stdout of `python <script> args` in the current folder; RuntimeError with its last line if it fails."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                          env=dict(os.environ, WANDB_MODE='disabled'))
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or ['no output'])[-1][-200:])
    return proc.stdout


def sized(argv):
    """(model on the meta device, config) of bench.py's argv, as bench.py builds it (GPT-2's vocabulary for
    random tokens)."""
    c = configure(train_defaults(), [a for a in argv if not a.startswith('--data=')])
    with torch.device('meta'):
        return GPT(GPTConfig(**derive(c, {'meta': None} if '--data=random' in argv else None)[2])), c


def largest_batch(argv):
    """The largest micro-batch of config argv whose training step train_memory fits in 90% of the free
    device memory (at least 1)."""
    model, _ = sized(argv)
    free = 0.9 * (available_memory(device, device_type) or 0)
    b = 1
    while b < 256 and train_memory(model, b + 1, dtype, use_ema=False) <= free:
        b += 1
    return b


def vendor_peak():
    """FLOP/s of the vendor's dense bf16 peak for this GPU, None where unknown (or not a GPU)."""
    if device_type != 'cuda':
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    return next((tflops * 1e12 for key, tflops in VENDOR_BF16_TFLOPS if key in name), None)


def throughput(name, argv):
    """One bench.py run of config argv: (its table row: tokens/s, MFU against the measured and the vendor's
    peak, peak memory against train_memory's estimate; bench.py's output). Out of memory, it retries at half
    the micro-batch: a short GPU window should end with a table, not a traceback."""
    flags = (['--warmup=1', '--steps=1', '--rounds=1', '--compile=False', '--peak_n=256'] if tiny else
             ['--warmup=3', '--steps=10', '--rounds=2', '--compile=True'])
    model, c = sized(argv)
    try:
        out = run('bench.py', *argv, *flags, f'--device={device}')
    except RuntimeError as e:
        if 'out of memory' in str(e) and c['batch_size'] > 1:
            return throughput(name, [*argv, f"--batch_size={c['batch_size'] // 2}"])
        raise
    rows = {m.group(1): m.groups()[1:] for m in BENCH_ROW.finditer(out)}
    tok_s, gflop_s, mfu, mem = rows['compiled' if 'compiled' in rows else 'eager']
    estimate = train_memory(model, c['batch_size'], dtype, use_ema=False)  # bench.py keeps no EMA
    measured = int(mem.replace(',', '')) * 2 ** 20
    vendor = vendor_peak()
    against_vendor = f"{100 * float(gflop_s.replace(',', '')) * 1e9 / vendor:.1f}%" if vendor else '-'
    memory = (f"{measured / 2 ** 30:.2f} GiB peak vs {estimate / 2 ** 30:.2f} GiB estimated "
              f"({100 * (estimate / measured - 1):+.0f}%)" if device_type == 'cuda' else
              f"{measured / 2 ** 30:.2f} GiB process RSS (the estimate is of device memory)")
    return (f"| {name}, batch {c['batch_size']} | {tok_s} tokens/s | MFU {mfu}% of measured peak, {against_vendor} "
            f"of vendor's | {memory} |"), out


def measure(name, f):
    """f()'s table row, or a row saying why it failed (the suite goes on: one failure costs one row)."""
    try:
        return f()
    except (RuntimeError, ValueError, AttributeError, KeyError) as e:  # a failed command, output not as expected
        failed.append(name)
        return f"| {name} | failed: {e} | | |"


# -----------------------------------------------------------------------------
t_start = time.time()
name = torch.cuda.get_device_name(torch.device(device)) if device_type == 'cuda' else device
print(f"suite: {name}, torch {torch.__version__}, CUDA {torch.version.cuda or '-'}, {time.strftime('%Y-%m-%d')}, "
      f"dtype {dtype}{', tiny sizes' if tiny else ''}: python suite.py {' '.join(sys.argv[1:])}", flush=True)
if not os.path.isdir(os.path.join('data', dataset)):
    sys.exit(f"error: data/{dataset} does not exist; prepare it first: {prepare_command(dataset)}")
vendor = vendor_peak()
failed = []
small = SMALL if tiny else []
lm = [f'--dataset={dataset}']


def plain_and_peak():
    """The plain 6 x 384 model's row, after a row with the matmul peak its bench.py run measured."""
    row, out = throughput('6 x 384 plain', [os.path.join(ROOT, 'config', 'shakespeare_char_384_plain.py'), *lm, *small])
    peak = re.search(r'measured matmul peak: (.*?);', out).group(1)
    return f"| matmul peak | {peak} | vendor's dense bf16: {f'{vendor / 1e12:.0f} TFLOP/s' if vendor else '-'} | |\n" + row


def preset_a(n_sup):
    argv = [os.path.join(ROOT, 'config', 'conservative.py'), '--data=random', '--gradient_accumulation_steps=1',
            f'--n_sup={n_sup}']
    return throughput(f'preset A, n_sup {n_sup}', argv + (small if tiny else [f'--batch_size={largest_batch(argv)}']))[0]


def sudoku():
    """The paper's Sudoku model, faithful, on a small generated set: samples x supervision steps per second."""
    if not os.path.exists(os.path.join('data', 'sudoku_suite', 'meta.json')):
        run(os.path.join('data', 'sudoku', 'prepare.py'), '--difficulty=easy', '--n_train=64', '--n_test=16',
            '--out_dir=data/sudoku_suite')
    argv = [os.path.join(ROOT, 'config', 'tiny_puzzle.py'), '--dataset=sudoku_suite']
    if tiny:
        argv += ['--n_embd=32', '--n_head=2', '--n_kv_head=2', '--n_loops=1', '--T_recursion=1', '--n_sup=2',
                 '--batch_size=2', '--puzzle_emb_ndim=0']
    else:  # the paper's batch, 768, where it fits
        argv += [f'--batch_size={min(768, largest_batch(argv))}']
    row = throughput('Sudoku, faithful mlp_t', argv)[0]
    model, c = sized(argv)
    tok_s = float(re.search(r'\| ([\d,]+) tokens/s', row).group(1).replace(',', ''))
    return row.replace(' tokens/s', f" tokens/s = {tok_s / model.config.block_size * c['n_sup']:,.0f} "
                                    f"samples x steps/s", 1)


lm_dir = os.path.join(work_dir, 'lm')


def default_lm():
    """The default LM's val loss after lm_iters iterations (its checkpoint is what the sampling row uses)."""
    iters = 20 if tiny else lm_iters
    run('train.py', *lm, f'--out_dir={lm_dir}', '--overwrite=True', f'--device={device}', f'--max_iters={iters}',
        f'--lr_decay_iters={iters}', f'--eval_interval={iters}', *(SMALL + ['--compile=False'] if tiny else []))
    with open(os.path.join(lm_dir, 'metrics.jsonl')) as f:
        last = [r for r in map(json.loads, f) if r['kind'] == 'eval'][-1]
    return (f"| default LM | val loss {last['val_loss_s1']:.4f} after {last['iter']} iterations | "
            f"{last['time']:.0f} s, evals included | |")


def sampling():
    out = run('bench.py', '--sample=True', f'--out_dir={lm_dir}', f'--device={device}', '--compile=False',
              '--n_sup_inference=2', *(['--n_tokens=16', '--repeats=1', '--val_sequences=1', '--val_length=8']
                                       if tiny else []))
    recompute = re.search(r'recompute window +([\d.]+) tokens/s', out).group(1)
    cached, speedup = re.search(r'KV cache +([\d.]+) tokens/s +\(([\d.]+)x\)', out).groups()
    return f"| sampling, default LM at n_sup 2 | KV cache {cached} tokens/s, recompute {recompute} | {speedup}x | |"


rows = [measure('6 x 384 plain', plain_and_peak),
        measure('6 x 384 recursive', lambda: throughput(
            '6 x 384 recursive', [os.path.join(ROOT, 'config', 'shakespeare_char_384.py'), *lm, *small])[0]),
        measure('preset A, n_sup 1', lambda: preset_a(1)),
        measure('preset A, n_sup 8', lambda: preset_a(configure(train_defaults(), [os.path.join(
            ROOT, 'config', 'conservative.py')])['n_sup'])),
        measure('Sudoku, faithful mlp_t', sudoku), measure('default LM', default_lm), measure('sampling', sampling)]
print("\n| measurement | result | against | memory |\n|---|---|---|---|")
print('\n'.join(rows))
print(f"\nsuite took {time.time() - t_start:.0f} s" + (f"; failed: {', '.join(failed)}" if failed else ''))
sys.exit(1 if failed else 0)
