"""
Benchmarks: what recursion costs (FLOPs, tokens/s, MFU, memory) and what it buys (ablation grids).
Shared machines are noisy, so every comparison is measured within one run, alternating, as ratios.

Training throughput of a config, built exactly as `python train.py <same args>` would build it
(train.py's defaults, config files, --key=value overrides), eager and compiled (--compile=False: eager only):

    python bench.py                                                # the default recursive LM
    python bench.py config/shakespeare_char_plain.py --data=random # random tokens, no data needed
    python bench.py --vs=config/shakespeare_char_plain.py          # two configs alternated -> ratios
    python bench.py config/conservative.py --batch_size=1 --gradient_accumulation_steps=1 --n_sup=1 --data=random
    python bench.py --profile=True                                 # + top operators by self time

Ablation grids: train.py runs every setting of a grid file for the same budget on the same data and
seed, then a markdown table, a CSV and plots of val loss vs wall time and vs FLOPs:

    python bench.py --ablate=config/ablate/nsup.py

Sizes of the language-model presets A-D and their baselines (no compute): python bench.py --presets=True
Sampling from a checkpoint (KV cache vs recompute, halting vs not, the val loss under halting):

    python bench.py --sample=True --out_dir=out-shakespeare-char --compile=False

Plots of any training logs: python plot.py out_dir [out_dir2 ...]
"""
import builtins
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from configurator import ConfigError, config_keys, configure, script_defaults
from model import GPT, GPTConfig, KVCache, data_model_args, load_model

# -----------------------------------------------------------------------------
# bench.py's own keys. Every key of train.py is a key here too, with train.py's default (the model,
# dataset, batch_size, block_size, dtype, compile, device, seed, out_dir, ...).
data = 'real'         # training batches: 'real' (data/<dataset>/train.bin) or 'random' tokens (no data needed)
warmup = 2            # untimed training steps per variant before the timings (compile happens here)
steps = 4             # timed training steps per variant and round
rounds = 2            # the variants (config x eager/compiled) alternate this many times
vs = ''               # a second config file, measured alternately with the first; reported as ratios
profile = False       # also profile `steps` steps of each variant (torch.profiler): top operators by self time
threads = 0           # torch threads; 0 = torch's default
peak_n = 0            # size of the square matmul whose speed is the peak (0: 4096 on CPU, 8192 on GPUs)
presets = False       # print the presets A-D sizes table instead
ablate = ''           # a grid file (config/ablate/*.py): train each setting, compare
ablate_dir = ''       # where the grid's runs go ('' = out-ablate-<grid name>)
sample = False        # the sampling benchmark instead, from out_dir/ckpt_name
ckpt_name = 'ckpt.pt'
n_tokens = 256        # sampling: tokens generated per timing
repeats = 2           # sampling: cache / no-cache timings alternate this many times
halt_threshold = 0.5  # sampling: the halting rule measured against no halting
n_sup_inference = 0   # sampling: 0 = as trained
val_sequences = 4     # sampling: teacher-forced val sequences for the halting val loss
val_length = 128
# -----------------------------------------------------------------------------
TRAIN_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'train.py')
DEFAULTS = {**script_defaults(TRAIN_PY), **{k: globals()[k] for k in config_keys(globals())}}
try:
    globals().update(configure(DEFAULTS, sys.argv[1:]))
except ConfigError as e:
    sys.exit(f"error: {e}")
if threads:
    torch.set_num_threads(threads)
device = device or ('cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu')
device_type = 'cuda' if 'cuda' in device else 'mps' if 'mps' in device else 'cpu'
if not dtype:  # as train.py: bf16 where the hardware does it natively
    if device_type == 'cuda':
        dtype = 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'
    elif device_type == 'cpu' and (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()):
        dtype = 'bfloat16'
    else:
        dtype = 'float32'
PTDTYPE = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


# ----------------------------------------------------------------------------- models as train.py builds them

def build(c, meta=False):
    """The model of config dict c (on the meta device: no memory, no compute), or exit with one line."""
    try:
        with torch.device('meta') if meta else nullcontext():
            return GPT(GPTConfig(**data_model_args(c)[1]))
    except ValueError as e:
        sys.exit(f"error: {e}")


def preset_table():
    """Per preset: parameters, training FLOPs per token (recursion counted), memory per sequence and the
    largest micro-batch in 24/40/80 GB. Models are built on the meta device (no memory, no compute);
    activation memory is what autograd saves in one supervision step under bf16 autocast, measured with
    saved-tensor hooks as the difference between micro-batches of 2 and 1."""
    print("| preset | params (non-emb) | emb | GFLOPs/token (train) | activations/seq | weights+grads+AdamW "
          "| micro-batch 24 / 40 / 80 GB |")
    print("|---|---|---|---|---|---|---|")
    for name in ('conservative', 'conservative_plain', 'balanced', 'balanced_plain', 'aggressive',
                 'aggressive_plain', 'cloud', 'cloud_plain'):
        c = configure(DEFAULTS, [os.path.join('config', f'{name}.py')])
        with torch.device('meta'):
            m = GPT(GPTConfig(**{k: c[k] for k in GPTConfig.keys() if k in c}, vocab_size=50304))

        def saved_bytes(B):
            storages = {}

            def pack(t):
                storages[t.untyped_storage()._cdata] = t.untyped_storage().nbytes()
                return t
            idx = torch.zeros(B, c['block_size'], dtype=torch.long, device='meta')
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast('cpu', torch.bfloat16):
                logits = m(idx)[0]
                F.cross_entropy(logits.float().flatten(0, 1), idx.flatten())
            return sum(storages.values())
        act = saved_bytes(2) - saved_bytes(1)
        n_params = sum(p.numel() for p in m.parameters())
        state = 16 * n_params  # fp32 weights, grads, AdamW's two moments
        fits = ' / '.join(str(max(0, int((gb * 2 ** 30 - state) // act))) for gb in (24, 40, 80))
        print(f"| {name} | {m.get_num_params() / 1e6:.1f}M | {m.wte.weight.numel() / 1e6:.1f}M | "
              f"{m.flops_per_token() / 1e9:.2f} | {act / 2 ** 30:.2f} GiB | {state / 2 ** 30:.1f} GiB | {fits} |")


# ----------------------------------------------------------------------------- training throughput

def sync():
    if device_type == 'cuda':
        torch.cuda.synchronize()


def matmul_peak(dt):
    """FLOP/s of a large square matmul in dtype dt on this device (repeated for >= 0.3 s): the measured
    peak MFU is reported against."""
    n = peak_n or (8192 if device_type == 'cuda' else 4096)
    a, b = torch.randn(n, n, device=device, dtype=dt), torch.randn(n, n, device=device, dtype=dt)
    a @ b
    sync()
    t0, reps = time.perf_counter(), 0
    while time.perf_counter() - t0 < 0.3:
        a @ b
        reps += 1
        sync()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def reset_peak_memory():
    if device_type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    else:
        try:  # glibc: hand freed memory back to the OS, so RSS is what is live; then reset the peak RSS (VmHWM)
            import ctypes
            ctypes.CDLL('libc.so.6').malloc_trim(0)
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
        except (OSError, AttributeError):  # not Linux/glibc: the peak since the process started
            pass


def peak_memory():
    """Bytes: CUDA's max allocated since the last reset; elsewhere the process's peak RSS."""
    if device_type == 'cuda':
        return torch.cuda.max_memory_allocated()
    try:
        with open('/proc/self/status') as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith('VmHWM'))
    except (OSError, StopIteration):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == 'darwin' else 1024)


class Bench:
    """One config made ready to train as train.py would: model, AdamW, autocast, batches."""

    def __init__(self, name, c):
        self.name, self.c = name, c
        torch.manual_seed(c['seed'])
        self.model = build(c).to(device)
        self.cfg = self.model.config  # with what the data fixes (vocabulary, lengths, widths)
        self.optimizer = self.model.configure_optimizers(c['weight_decay'], c['learning_rate'],
                                                         (c['beta1'], c['beta2']), device_type)
        self.ctx = nullcontext() if dtype == 'float32' else torch.autocast(device_type, PTDTYPE[dtype])
        self.B, self.L = c['batch_size'], self.cfg.block_size
        self.tokens = c['gradient_accumulation_steps'] * self.B * self.L  # per training step (one process)
        self.flops = self.model.flops_per_token() * self.tokens
        self.gen = torch.Generator().manual_seed(c['seed'])
        self.data_path = os.path.join('data', c['dataset'], 'train.bin')
        if data == 'real' and not self.cfg.causal:
            print(f"{name}: puzzle or control data -> random inputs (the compute does not depend on them)")
        elif data == 'real' and not os.path.exists(self.data_path):
            sys.exit(f"error: {self.data_path} not found; run `python data/{c['dataset']}/prepare.py` "
                     f"or benchmark on random tokens with --data=random")
        self.compiled = None

    def batch(self):
        V, P = self.cfg.vocab_size, None
        if self.cfg.n_features:  # control: features in, controls out
            X = torch.randn(self.B, self.L, self.cfg.n_features, generator=self.gen)
            return X.to(device), torch.randn(self.B, self.L, self.cfg.n_outputs, generator=self.gen).to(device), P
        if data == 'real' and self.cfg.causal:  # as train.py: random windows of the memmap
            d = np.memmap(self.data_path, dtype=np.uint16, mode='r')
            ix = torch.randint(len(d) - self.L - 1, (self.B,), generator=self.gen).numpy()
            buf = torch.from_numpy(d[ix[:, None] + np.arange(self.L + 1)].astype(np.int64))
        else:
            buf = torch.randint(V, (self.B, self.L + 1), generator=self.gen)
        if self.cfg.puzzle_emb_ndim:
            P = torch.randint(self.cfg.num_puzzle_ids, (self.B,), generator=self.gen).to(device)
        return buf[:, :-1].to(device), buf[:, 1:].to(device), P

    def step(self, compiled):
        """One training iteration of train.py's batch schedule: for each micro-batch, n_sup supervision
        steps, each with its loss (cross-entropy + ACT BCE; the step weights and improvement term cost
        no matmuls and are left out) and its own backward; then clipping and one AdamW step."""
        model = self.model
        if compiled:
            if self.compiled is None:  # shares the weights and optimizer with the eager model
                self.compiled = torch.compile(self.model)
            model = self.compiled
        accum = self.c['gradient_accumulation_steps']
        for _ in range(accum):
            X, Y, P = self.batch()
            y = z = None
            for s in range(self.model.n_sup):
                with self.ctx:
                    logits, q, y, z = model(X, y, z, puzzle_ids=P)
                    if Y.is_floating_point():  # control: MSE to the controls (its ACT target is a rollout, no matmuls)
                        loss = F.mse_loss(logits.float(), Y)
                    else:
                        loss = F.cross_entropy(logits.float().flatten(0, 1), Y.flatten())
                        if q is not None:  # ACT: is the answer already right (per token, or per puzzle)?
                            right = logits.argmax(-1) == Y
                            target = right.all(1) if q.dim() == 1 else right
                            loss = loss + F.binary_cross_entropy_with_logits(q.float(), target.float())
                (loss / (accum * self.model.n_sup)).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def throughput():
    argv = sys.argv[1:]
    if data not in ('real', 'random'):
        sys.exit(f"error: data={data!r}; use 'real' (data/<dataset>/train.bin) or 'random'")
    benches = [Bench('A' if vs else 'config', configure(DEFAULTS, argv))]
    if vs:  # the second config on train.py's defaults, with the same --key=value overrides
        try:
            benches.append(Bench('B', configure(DEFAULTS, [vs] + [a for a in argv if a.startswith('--')])))
        except ConfigError as e:
            sys.exit(f"error: --vs: {e}")
    modes = (False, True) if compile else (False,)
    variants = [(b, m) for b in benches for m in modes]
    names = {(b, m): f"{b.name} {'compiled' if m else 'eager'}" for b, m in variants}
    for b, files in zip(benches, ([a for a in argv if not a.startswith('--')], [vs])):
        cfg = b.model.config
        what = (f"recursion n_loops {cfg.n_loops}, T {cfg.T_recursion}, n_sup {cfg.n_sup}" if cfg.recursion
                else "recursion off")
        print(f"{b.name}: {' '.join(files) or 'train.py defaults'} -> {cfg.n_layer} x {cfg.n_embd}, {what}, "
              f"batch {b.B} x {b.L}, {b.c['gradient_accumulation_steps']} micro-batches per step")
    print(f"device {device} ({torch.get_num_threads()} threads), dtype {dtype}, data {data}; "
          f"{warmup} warm-up + {rounds} x {steps} timed steps per variant")
    warm = {}
    for v in variants:  # warm-up and compile, untimed
        t0 = time.perf_counter()
        for _ in range(warmup):
            v[0].step(v[1])
        sync()
        warm[v] = time.perf_counter() - t0
        print(f"  {names[v]}: warm-up {warm[v]:.1f} s")
    peaks = {'float32': 0.0, 'bfloat16': 0.0}
    elapsed, mem = {v: 0.0 for v in variants}, {v: 0 for v in variants}
    for _ in tqdm(range(rounds), desc='rounds', leave=False):
        for k in peaks:  # the peak is measured between the timings too, under the same load
            peaks[k] = max(peaks[k], matmul_peak(PTDTYPE[k]))
        for v in variants:
            reset_peak_memory()
            sync()
            t0 = time.perf_counter()
            for _ in range(steps):
                v[0].step(v[1])
            sync()
            elapsed[v] += time.perf_counter() - t0
            mem[v] = max(mem[v], peak_memory())
    peak = peaks.get(dtype) or matmul_peak(PTDTYPE[dtype])
    print(f"\nmeasured matmul peak: fp32 {peaks['float32'] / 1e9:.1f} GFLOP/s, bf16 {peaks['bfloat16'] / 1e9:.1f} "
          f"GFLOP/s; MFU below is against {dtype} ({peak / 1e9:.1f} GFLOP/s)")
    mem_name = 'peak mem (CUDA max allocated)' if device_type == 'cuda' else 'peak RSS (process)'
    print(f"\n| variant | params (non-emb) | MFLOPs/token (train) | tokens/s | GFLOP/s | MFU | {mem_name} | warm-up |")
    print("|---|---|---|---|---|---|---|---|")
    result = {}
    for v in variants:
        b, t = v[0], elapsed[v]
        tok_s, flop_s = rounds * steps * b.tokens / t, rounds * steps * b.flops / t
        result[v] = (tok_s, flop_s / peak, mem[v])
        print(f"| {names[v]} | {b.model.get_num_params() / 1e6:.2f}M | {b.flops / b.tokens / 1e6:,.2f} | "
              f"{tok_s:,.0f} | {flop_s / 1e9:.2f} | {100 * flop_s / peak:.2f}% | {mem[v] / 2 ** 20:,.0f} MiB | "
              f"{warm[v]:.1f} s |")
    if compile:
        for b in benches:
            print(f"{b.name}: compiled / eager tokens/s {result[b, True][0] / result[b, False][0]:.2f}x")
    if vs:
        A, B = benches
        for m in modes:
            (ta, ma, ra), (tb, mb, rb) = result[A, m], result[B, m]
            print(f"B / A ({'compiled' if m else 'eager'}): tokens/s {tb / ta:.3f}x, FLOPs/token "
                  f"{B.flops / B.tokens / (A.flops / A.tokens):.3f}x, MFU {100 * mb:.1f}% vs {100 * ma:.1f}% "
                  f"({100 * (mb - ma):+.1f} points), memory {rb / ra:.2f}x")
    if profile:
        from torch.profiler import ProfilerActivity
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device_type == 'cuda' else [])
        key = 'self_cuda_time_total' if device_type == 'cuda' else 'self_cpu_time_total'
        for v in variants:
            with torch.profiler.profile(activities=activities) as prof:
                for _ in range(steps):
                    v[0].step(v[1])
                sync()
            print(f"\nprofile of {names[v]}, {steps} steps, top operators by self time:")
            print(prof.key_averages().table(sort_by=key, row_limit=15))


# ----------------------------------------------------------------------------- ablation grids

def run_ablation(path):
    """Train every setting of the grid file at `path` with train.py (same budget, data and seed), then write
    results.md, results.csv and val_loss.png next to the runs. A grid file is plain Python:

        settings = {'name': {'key': value, ...}, ...}  # train.py overrides per setting
        budget = {'max_iters': 300}                     # the same for every setting; or {'seconds': 60}
        common = {...}                                  # optional: overrides shared by every setting
        config = 'config/x.py'                          # optional: a config file under every setting

    --key=value arguments given to bench.py (train.py's keys) apply to every setting, after the budget and
    before the setting's own. A seconds budget stops a run with SIGTERM (train.py checkpoints), then an
    eval-only pass over that checkpoint logs the final metrics. Finished runs are kept and not rerun."""
    import plot
    grid = {}
    try:
        with open(path) as f:
            exec(builtins.compile(f.read(), path, 'exec'), grid)  # `compile` is a config key here
    except OSError as e:
        sys.exit(f"error: cannot read the grid file {path} ({e.strerror})")
    settings, budget = grid.get('settings'), dict(grid.get('budget', {}))
    if not isinstance(settings, dict) or not settings or not all(isinstance(s, dict) for s in settings.values()):
        sys.exit(f"error: {path} must define settings = {{'name': {{'key': value, ...}}, ...}}")
    seconds = budget.pop('seconds', 0)
    if not seconds and 'max_iters' not in budget:
        sys.exit(f"error: {path}: budget must hold 'max_iters' (iterations) or 'seconds', e.g. budget = {{'max_iters': 300}}")
    if seconds:
        budget.setdefault('max_iters', 10 ** 9)  # the clock stops it
    elif 'max_seconds' not in grid.get('common', {}):  # equal iterations: a base config's wall-clock lr cosine
        budget['max_seconds'] = 0                        # (max_seconds) would give each setting another schedule
    root = ablate_dir or 'out-ablate-' + os.path.splitext(os.path.basename(path))[0]
    cli = [a for a in sys.argv[1:] if a.startswith('--') and a.partition('=')[0][2:] in script_defaults(TRAIN_PY)]
    base = [grid['config']] if grid.get('config') else []
    runs = []
    for name, overrides in settings.items():
        run_dir = os.path.join(root, name)
        args = (base + [f'--{k}={v}' for k, v in {**grid.get('common', {}), **budget}.items()] + cli
                + [f'--{k}={v}' for k, v in overrides.items()] + [f'--out_dir={run_dir}'])
        try:
            c = configure(script_defaults(TRAIN_PY), args)
        except ConfigError as e:
            sys.exit(f"error: setting {name!r} of {path}: {e}")
        model = build(c, meta=True)
        done_path = os.path.join(run_dir, 'ablate.json')
        done = json.load(open(done_path)) if os.path.exists(done_path) else {}
        if done.get('args') != args:
            shutil.rmtree(run_dir, ignore_errors=True)
            os.makedirs(run_dir)
            print(f"{name}: python train.py {' '.join(args)}", flush=True)
            wall = train_run(args, run_dir, seconds)
            with open(done_path, 'w') as f:
                json.dump({'args': args, 'wall': wall}, f)
            done = {'args': args, 'wall': wall}
        rows = plot.read_log(run_dir)
        evals, trains = [r for r in rows if r['kind'] == 'eval'], [r for r in rows if r['kind'] == 'train']
        if not evals:
            sys.exit(f"error: {run_dir}/metrics.jsonl has no eval; see {run_dir}/train.log")
        puzzle = data_model_args(c)[0] == 'puzzle'  # control trains per batch and picks on val, as an LM
        schedule = c['schedule'] or ('trm' if puzzle else 'batch')
        # FLOPs per iteration: every token runs n_sup steps (batch schedule) or one (trm schedule)
        per_iter = (model.flops_per_token() * c['gradient_accumulation_steps'] * c['batch_size'] * model.config.block_size
                    / (model.n_sup if schedule == 'trm' else 1))
        speeds = [r['tok_per_s'] for r in trains[1:] or trains]  # the first log interval holds the compile
        runs.append({'name': name, 'overrides': overrides, 'dir': run_dir, 'rows': rows, 'final': evals[-1],
                     'split': 'test' if puzzle else 'val', 'n_sup': model.n_sup, 'params': model.get_num_params(),
                     'flops_per_token': model.flops_per_token(), 'flops_per_iter': per_iter,
                     'tok_per_s': float(np.median(speeds)) if speeds else float('nan'),
                     'iters': evals[-1]['iter'], 'wall': done['wall']})
    write_ablation(runs, root, path)
    plot.plot_ablation(runs, os.path.join(root, 'val_loss.png'))
    print(f"wrote {root}/results.md, results.csv, val_loss.png")


def train_run(args, run_dir, seconds):
    """Run train.py with args (output in run_dir/train.log); returns its wall time in seconds."""
    env = dict(os.environ, WANDB_MODE=os.environ.get('WANDB_MODE', 'disabled'))
    t0 = time.time()
    with open(os.path.join(run_dir, 'train.log'), 'w') as log:
        proc = subprocess.Popen([sys.executable, TRAIN_PY, *args], stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            proc.wait(timeout=seconds or None)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # train.py finishes its step and checkpoints
            proc.wait()
        wall = time.time() - t0
        if proc.returncode == 0 and seconds:  # the final metrics of the stopped run
            proc = subprocess.run([sys.executable, TRAIN_PY, *args, '--init_from=resume', '--eval_only=True'],
                                  stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        sys.exit(f"error: train.py failed in {run_dir} (exit {proc.returncode}); see {run_dir}/train.log")
    return wall


def write_ablation(runs, root, path):
    """results.md (one row per setting: final loss at every supervision step) and results.csv (every final metric)."""
    S = max(r['n_sup'] for r in runs)
    split = runs[0]['split']
    control = any(f'{split}_cost_ratio_s1' in r['final'] for r in runs)
    lines = [f"grid {path}: final {split} loss per supervision step" + (" (exact accuracy)" if split == 'test' else
                                                                         " (cost ratio, success)" if control else ''),
             '', '| setting | overrides | params | MFLOPs/token | tokens/s | iters | wall | '
             + ' | '.join(f's{s + 1}' for s in range(S)) + ' |', '|' + '---|' * (7 + S)]
    for r in runs:
        cells = []
        for s in range(S):
            loss = r['final'].get(f'{split}_loss_s{s + 1}')
            exact, ratio, success = (r['final'].get(f'{split}_{k}_s{s + 1}') for k in ('exact', 'cost_ratio', 'success'))
            extra = (f' ({exact:.3f})' if exact is not None else
                     f' ({ratio:.3f}, {success:.1%})' if ratio is not None else '')
            cells.append('' if loss is None else f'{loss:.4f}' + extra)
        over = ', '.join(f'{k}={v}' for k, v in r['overrides'].items()) or '-'
        lines.append(f"| {r['name']} | {over} | {r['params'] / 1e6:.2f}M | {r['flops_per_token'] / 1e6:.1f} | "
                     f"{r['tok_per_s']:,.0f} | {r['iters']} | {r['wall']:.0f} s | " + ' | '.join(cells) + ' |')
    text = '\n'.join(lines) + '\n'
    print('\n' + text)
    with open(os.path.join(root, 'results.md'), 'w') as f:
        f.write(text)
    keys = sorted({k for r in runs for k in r['final'] if k not in ('iter', 'kind', 'time', 'lr')})
    with open(os.path.join(root, 'results.csv'), 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['setting', 'overrides', 'params', 'flops_per_token', 'tok_per_s', 'iters', 'wall_s'] + keys)
        for r in runs:
            w.writerow([r['name'], json.dumps(r['overrides']), r['params'], r['flops_per_token'],
                        round(r['tok_per_s'], 1), r['iters'], round(r['wall'], 1)] + [r['final'].get(k, '') for k in keys])


# ----------------------------------------------------------------------------- sampling from a checkpoint

def sampling():
    torch.manual_seed(seed)
    ckpt_path = os.path.join(out_dir, ckpt_name)
    try:
        model, ckpt = load_model(ckpt_path, device, use_ema)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    cfg = model.config
    n_sup = n_sup_inference or model.n_sup
    calls_per_step = cfg.T_recursion * (cfg.n_loops + 1) if cfg.recursion else 1
    print(f"{ckpt_path}: n_layer {cfg.n_layer}, n_embd {cfg.n_embd}, n_loops {cfg.n_loops}, T {cfg.T_recursion}, "
          f"n_sup {n_sup} -> {n_sup * calls_per_step} net calls per token at most")

    def timed_generate(**kw):
        torch.manual_seed(seed)
        prompt = torch.zeros((1, 1), dtype=torch.long, device=device)
        t0 = time.time()
        _, steps = model.generate(prompt, n_tokens, temperature=1.0, top_k=None, n_sup=n_sup, **kw)
        return time.time() - t0, steps

    # -- KV cache vs recomputation (no halting), eager and compiled
    variants = [(False, True), (False, False)] + ([(True, True), (True, False)] if compile else [])
    for c in (True, False) if compile else ():  # compile outside the timings
        t0 = time.time()
        timed_generate(use_cache=c, compile=True)
        print(f"compile + first run ({'cache' if c else 'recompute'}): {time.time() - t0:.1f} s")
    t = {v: 0.0 for v in variants}
    for _ in range(repeats):  # interleaved, so drifts in machine speed hit every variant alike
        for c, cached in variants:
            t[c, cached] += timed_generate(use_cache=cached, compile=c)[0]
    t_cache, t_full = t[False, True], t[False, False]
    print(f"\nsampling {n_tokens} tokens, no halting, {torch.get_num_threads()} threads:")
    print(f"  recompute window  {repeats * n_tokens / t_full:8.1f} tokens/s")
    print(f"  KV cache          {repeats * n_tokens / t_cache:8.1f} tokens/s   ({t_full / t_cache:.1f}x)")
    if compile:
        print(f"  compiled: recompute window  {repeats * n_tokens / t[True, False]:8.1f} tokens/s")
        print(f"  compiled: KV cache          {repeats * n_tokens / t[True, True]:8.1f} tokens/s   "
              f"({t[True, False] / t[True, True]:.1f}x of compiled recompute, {t_full / t[True, True]:.1f}x of eager)")

    # -- halting vs none, with the cache
    if model.q_head is None or n_sup == 1:
        sys.exit("\nno halting to measure: the model has no q-head or runs a single supervision step")
    t_halt, steps = timed_generate(use_cache=True, halt_threshold=halt_threshold)
    print(f"  KV cache + halting {n_tokens / t_halt:7.1f} tokens/s   ({t_cache / repeats / t_halt:.2f}x of no halting), "
          f"steps per token {steps.float().mean():.2f} of {n_sup} "
          f"-> {(1 - steps.float().mean().item() / n_sup) * 100:.1f}% fewer net calls")

    # -- val loss of teacher-forced decoding, with and without halting
    def halting_val_loss(threshold):
        data = np.memmap(os.path.join('data', ckpt['config']['dataset'], 'val.bin'), dtype=np.uint16, mode='r')
        g = torch.Generator().manual_seed(seed)
        L = min(val_length, cfg.block_size)
        ix = torch.randint(len(data) - L - 1, (val_sequences,), generator=g).numpy()
        seqs = torch.from_numpy(data[ix[:, None] + np.arange(L + 1)].astype(np.int64)).to(device)
        cache, losses, steps = KVCache(), [], []
        for t in tqdm(range(L), desc=f"val, halt_threshold={threshold}", leave=False):
            logits, used = model.decode(seqs[:, t:t + 1], cache, t, n_sup, threshold)
            losses.append(F.cross_entropy(logits.float(), seqs[:, t + 1], reduction='none'))
            steps.append(used)
        return torch.stack(losses).mean().item(), torch.stack(steps).float().mean().item()

    loss_full, _ = halting_val_loss(1.0)
    loss_halt, mean_steps = halting_val_loss(halt_threshold)
    print(f"\nteacher-forced val loss ({val_sequences} x {min(val_length, cfg.block_size)} tokens):")
    print(f"  all {n_sup} steps       {loss_full:.4f}")
    print(f"  halting at {halt_threshold}    {loss_halt:.4f} ({(loss_halt / loss_full - 1) * 100:+.2f}%), "
          f"steps per token {mean_steps:.2f} -> {(1 - mean_steps / n_sup) * 100:.1f}% fewer net calls")


# -----------------------------------------------------------------------------
if presets:
    preset_table()
elif ablate:
    run_ablation(ablate)
elif sample:
    sampling()
else:
    throughput()
