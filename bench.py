"""
What recursion costs (FLOPs, tokens/s, MFU, memory). Shared machines are noisy, so every comparison is
measured within one run, alternating, as ratios. Training throughput of a config, built and trained as
`python train.py <same args>` would (defaults, config files, --key=value, its loss), eager and compiled:

    python bench.py                                                # the default recursive LM
    python bench.py config/shakespeare_char_plain.py --data=random # random tokens, no data needed
    python bench.py --vs=config/shakespeare_char_plain.py          # two configs alternated -> ratios
    python bench.py config/conservative.py --batch_size=1 --gradient_accumulation_steps=1 --n_sup=1 --data=random
    python bench.py --profile=True                                 # + top operators by self time

    python bench.py --presets=True                                 # sizes of the presets A-D (no compute)
    python bench.py config/sudoku_extreme_1gpu.py --estimate=True  # a run's FLOPs, memory, time on a GPU
    python bench.py --sample=True --out_dir=out-shakespeare-char   # sampling: KV cache, halting, val loss
    python bench.py --halting=out-nsup2,out-nsup4,out-plain        # val loss vs net calls over halt thresholds

What recursion buys: python ablate.py config/ablate/nsup.py (or bench.py --ablate=...); plots: plot.py.
"""
import ctypes
import os
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

import checkpoint
import lm
from ablate import derive, flops_per_iter, run_ablation
from common import PTDTYPE, duration, native_bf16, or_exit, runtime, supervision_weights, task_of, train_memory
from configurator import (DEFAULTS_FILE, TRAIN_RULES, ConfigError, above, at_least, config_keys, configure, fraction,
                          from_command_line, one_of, train_defaults)
from generate import decode, generate, sites_per_step
from model import GPT, GPTConfig

# -----------------------------------------------------------------------------
# bench.py's own keys. Every key of train.py is a key here too, with train.py's default (the model,
# dataset, batch_size, block_size, dtype, compile, device, seed, out_dir, ...).
data = 'real'         # training batches: 'real' (the task's own, as train.py draws them) or 'random' (no LM data needed)
warmup = 2            # untimed training steps per variant before the timings (compile happens here)
steps = 4             # timed training steps per variant and round
rounds = 2            # the variants (config x eager/compiled) alternate this many times
vs = ''               # a second config file, measured alternately with the first; reported as ratios
profile = False       # also profile `steps` steps of each variant (torch.profiler): top operators by self time
threads = 0           # torch threads; 0 = torch's default
peak_n = 0            # size of the square matmul whose speed is the peak (0: 4096 on CPU, 8192 on GPUs)
presets = False       # print the presets A-D sizes table instead
estimate = False      # print what the config's run costs (FLOPs, memory, time at peak_tflops) instead: no compute
peak_tflops = 989.0   # estimate: the GPU's dense bf16 peak in TFLOP/s (989: H100/H200 SXM; A100 312; L40S 362)
ablate = ''           # a grid file (config/ablate/*.py): ablate.py trains each setting and compares them
ablate_dir = ''       # where the grid's runs go ('' = out-ablate-<grid name>)
sample = False        # the sampling benchmark instead, from out_dir/ckpt_name
ckpt_name = 'ckpt.pt'
n_tokens = 256        # sampling: tokens generated per timing
repeats = 2           # sampling: cache / no-cache timings alternate this many times
halt_threshold = 0.5  # sampling: the halting rule measured against no halting
n_sup_inference = 0   # sampling: 0 = as trained
val_sequences = 32    # sampling, halting: teacher-forced val sequences for the halting val loss
val_length = 128
halting = ''          # out_dirs of language models (comma-separated): val loss vs block calls per token, at 1..n_sup
halt_thresholds = '0.9,0.8,0.7,0.6,0.5,0.4,0.3,0.2,0.1'  # steps and halting at these thresholds: a table, plot_path
plot_path = 'halting.png'
# -----------------------------------------------------------------------------
BENCH_KEYS = config_keys(globals())
DEFAULTS = {**train_defaults(), **{k: globals()[k] for k in BENCH_KEYS}}
RULES = {**TRAIN_RULES, 'data': one_of('real', 'random'), 'warmup': at_least(0), 'steps': at_least(1),
         'rounds': at_least(1), 'threads': at_least(0), 'peak_n': at_least(0), 'n_tokens': at_least(1),
         'repeats': at_least(1), 'halt_threshold': fraction(), 'n_sup_inference': at_least(0),
         'val_sequences': at_least(1), 'val_length': at_least(2), 'peak_tflops': above(0)}
config = from_command_line(DEFAULTS, __file__, DEFAULTS_FILE, rules=RULES)
# bench.py's keys become globals; train.py's stay in config (config['compile'], ...): none shadows a builtin
globals().update({k: config[k] for k in BENCH_KEYS})
if threads:
    torch.set_num_threads(threads)
device, device_type, dtype, ctx = or_exit(runtime, config['device'], config['dtype'])


# ----------------------------------------------------------------------------- models as train.py builds them

def setup(c):
    """(task module, its data, GPTConfig arguments) of config dict c as train.py derives them, or exit with
    one line. Random tokens need no language-model data (GPT-2's vocabulary then); puzzles and control
    need theirs even for random inputs: it fixes the model's shape, and control's loss rolls out its system."""
    try:
        return derive(c)
    except ValueError as e:
        if task_of(os.path.join('data', c['dataset'])) != 'lm':
            sys.exit(f"error: {e}")
        if data == 'real':
            sys.exit(f"error: {e}, or benchmark on random tokens with --data=random")
        return derive(c, {'meta': None})


def preset_table():
    """Per preset: parameters, training FLOPs per token (recursion counted), memory per sequence and the
    largest micro-batch in 24/40/80 GB, from common.train_memory (the estimate train.py refuses a run by)
    under bf16 autocast. Models are built on the meta device: no memory, no compute."""
    print("| preset | params (non-emb) | emb | GFLOPs/token (train) | activations/seq | weights+grads+AdamW+EMA "
          "| micro-batch 24 / 40 / 80 GB |")
    print("|---|---|---|---|---|---|---|")
    for name in ('conservative', 'conservative_plain', 'balanced', 'balanced_plain', 'aggressive',
                 'aggressive_plain', 'cloud', 'cloud_plain'):
        c = configure(train_defaults(), [os.path.join('config', f'{name}.py')])
        with torch.device('meta'):  # the presets' data is GPT-2 tokens: no need to have it here
            m = GPT(GPTConfig(**{k: c[k] for k in GPTConfig.keys() if k in c}, vocab_size=lm.GPT2_VOCAB))
        state = train_memory(m, 0, 'bfloat16', c['use_ema'])
        act = train_memory(m, 1, 'bfloat16', c['use_ema']) - state
        fits = ' / '.join(str(max(0, int((gb * 2 ** 30 - state) // act))) for gb in (24, 40, 80))
        print(f"| {name} | {m.get_num_params() / 1e6:.1f}M | {m.wte.weight.numel() / 1e6:.1f}M | "
              f"{m.flops_per_token() / 1e9:.2f} | {act / 2 ** 30:.2f} GiB | {state / 2 ** 30:.1f} GiB | {fits} |")


def estimate_run():
    """What config's run of max_iters costs, from its FLOP count (no compute): parameters, FLOPs per iteration
    and in all, the memory of a step under bf16 (common.train_memory, per process) and the time at 10, 30 and
    50% of peak_tflops (small models reach the low end: their matmuls are small). Needs the data folder (its
    meta fixes the vocabulary and lengths)."""
    task, _, model_args = setup(config)
    with torch.device('meta'):
        m = GPT(GPTConfig(**model_args))
    per_iter = flops_per_iter(m, config, task)
    total = per_iter * config['max_iters']
    memory = train_memory(m, config['batch_size'], 'bfloat16', config['use_ema'])
    print(f"{m.get_num_params() / 1e6:.2f}M params, {per_iter / 1e12:.2f} TFLOP per iteration "
          f"({config['batch_size']} x {m.config.block_size} tokens), {config['max_iters']} iterations: "
          f"{total:.3g} FLOP; ~{memory / 2 ** 30:.0f} GiB per step (bf16, batch {config['batch_size']})")
    print(' | '.join(f"{mfu:.0%} of {peak_tflops:g} TFLOP/s: {duration(total / (mfu * peak_tflops * 1e12))}"
                     for mfu in (0.1, 0.3, 0.5)))


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
        return torch.cuda.reset_peak_memory_stats()
    try:  # glibc: hand freed memory back to the OS, so RSS is what is live; then reset the peak RSS (VmHWM)
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
    """One config made ready to train as train.py would: model, AdamW, autocast, batches, loss."""

    def __init__(self, name, c):
        self.name, self.c = name, c
        self.task, self.task_data, model_args = setup(c)
        torch.manual_seed(c['seed'])
        try:
            self.model = GPT(GPTConfig(**model_args)).to(device)
        except ValueError as e:
            sys.exit(f"error: {e}")
        self.cfg = self.model.config  # with what the data fixes (vocabulary, lengths, widths)
        self.optimizer = self.model.configure_optimizers(c['weight_decay'], c['learning_rate'], (c['beta1'], c['beta2']),
                                                         device_type, c['puzzle_emb_lr'], c['puzzle_emb_weight_decay'])
        self.ctx = ctx
        self.B, self.L = c['batch_size'], self.cfg.block_size
        self.tokens = c['gradient_accumulation_steps'] * self.B * self.L  # per training step (one process)
        self.flops = self.model.flops_per_token() * self.tokens
        self.weights = supervision_weights(c['supervision_weight_base'], self.model.n_sup)  # as train.py
        self.gen = torch.Generator().manual_seed(c['seed'])
        self.compiled = None

    def batch(self):
        """A micro-batch (inputs, targets, puzzle ids or None) on the device: the task's, drawn as train.py
        draws them, or random of the same shapes (the compute does not depend on the values)."""
        cfg, B, L, g = self.cfg, self.B, self.L, self.gen
        if data == 'real':
            ix, aug_seed = self.task.draw(self.task_data, g, (B,))
            X, Y, P = self.task.get_batch(self.task_data, 'train', ix, aug_seed)
        elif cfg.n_features:  # control: features in, controls out
            X, Y, P = torch.randn(B, L, cfg.n_features, generator=g), torch.randn(B, L, cfg.n_outputs, generator=g), None
        else:
            X, Y = torch.randint(cfg.vocab_size, (2, B, L), generator=g)
            P = torch.randint(cfg.num_puzzle_ids, (B,), generator=g) if cfg.puzzle_emb_ndim else None
        return tuple(t if t is None else t.to(device) for t in (X, Y, P))

    def step(self, compiled):
        """One training iteration of train.py's batch schedule: for each micro-batch, n_sup supervision
        steps, each with the task's loss (task.losses) in train.py's objective, w_s * (loss + act_loss_weight
        * bce), and its own backward; then clipping and one AdamW step. (train.py's improvement term costs no
        matmuls and is left out; its trm schedule runs the same steps with an optimizer step after each.)"""
        if compiled and self.compiled is None:  # shares the weights and optimizer with the eager model
            self.compiled = torch.compile(self.model)
        model = self.compiled if compiled else self.model
        c, accum = self.c, self.c['gradient_accumulation_steps']
        for _ in range(accum):
            X, Y, P = self.batch()
            y = z = None
            for w in self.weights:
                with self.ctx:
                    logits, q, y, z = model(X, y, z, puzzle_ids=P)
                    loss, bce, _ = self.task.losses(logits, q, X, Y, self.task_data, c)
                    total = w * loss if bce is None else w * (loss + c['act_loss_weight'] * bce)
                (total / accum).backward()
                X = self.task.next_input(X, logits, self.task_data, c)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), c['grad_clip'] if c['grad_clip'] > 0 else float('inf'))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def run(self, compiled, n):
        for _ in range(n):
            self.step(compiled)
        sync()


def throughput():
    argv = sys.argv[1:]
    benches = [Bench('A' if vs else 'config', configure(DEFAULTS, argv))]
    if vs:  # the second config on train.py's defaults, with the same --key=value overrides
        try:
            benches.append(Bench('B', configure(DEFAULTS, [vs] + [a for a in argv if a.startswith('--')])))
        except ConfigError as e:
            sys.exit(f"error: --vs: {e}")
    modes = (False, True) if config['compile'] else (False,)
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
        v[0].run(v[1], warmup)
        warm[v] = time.perf_counter() - t0
        print(f"  {names[v]}: warm-up {warm[v]:.1f} s")
    # peaks in the dtypes this device runs natively only: emulated bf16 on an AVX2 CPU takes minutes to time
    peaks = {k: 0.0 for k in ['float32'] + ['bfloat16'] * native_bf16(device_type) + ['float16'] * (device_type == 'cuda')}
    elapsed, mem = {v: 0.0 for v in variants}, {v: 0 for v in variants}
    for _ in tqdm(range(rounds), desc='rounds', leave=False):
        for k in peaks:  # the peak is measured between the timings too, under the same load
            peaks[k] = max(peaks[k], matmul_peak(PTDTYPE[k]))
        for v in variants:
            reset_peak_memory()
            sync()
            t0 = time.perf_counter()
            v[0].run(v[1], steps)
            elapsed[v] += time.perf_counter() - t0
            mem[v] = max(mem[v], peak_memory())
    against = dtype if dtype in peaks else max(peaks, key=peaks.get)  # an emulated dtype: the fastest native one
    peak = peaks[against]
    print(f"\nmeasured matmul peak: " + ', '.join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peaks.items()) +
          f"; MFU below is against {against} ({peak / 1e9:.1f} GFLOP/s)")
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
    if config['compile']:
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
                v[0].run(v[1], steps)
            print(f"\nprofile of {names[v]}, {steps} steps, top operators by self time:")
            print(prof.key_averages().table(sort_by=key, row_limit=15))


# ----------------------------------------------------------------------------- sampling from a checkpoint

def sampling():
    """Generation speed from a language-model checkpoint: the KV cache vs recomputing the window (eager,
    and compiled unless --compile=False), halting vs not, and the teacher-forced val loss under halting."""
    seed, use_compile = config['seed'], config['compile']
    ckpt_path = os.path.join(config['out_dir'], ckpt_name)
    try:
        model, ckpt = checkpoint.load_model(ckpt_path, device, config['use_ema'])
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    if ckpt['task'] != 'lm':
        sys.exit(f"error: {ckpt_path} is a {ckpt['task']} checkpoint; the sampling bench generates text")
    cfg = model.config
    n_sup = n_sup_inference or model.n_sup
    print(f"{ckpt_path}: n_layer {cfg.n_layer}, n_embd {cfg.n_embd}, n_loops {cfg.n_loops}, T {cfg.T_recursion}, "
          f"n_sup {n_sup} -> {n_sup * sites_per_step(cfg) // cfg.n_layer} net calls per token at most")

    def timed_generate(**kw):
        torch.manual_seed(seed)
        prompt = torch.zeros((1, 1), dtype=torch.long, device=device)
        t0 = time.time()
        _, used = generate(model, prompt, n_tokens, temperature=1.0, top_k=None, n_sup=n_sup, **kw)
        return time.time() - t0, used

    # -- KV cache vs recomputation (no halting), eager and compiled: (compiled, cached) -> seconds
    variants = [(False, True), (False, False)] + ([(True, True), (True, False)] if use_compile else [])
    for cached in (True, False) if use_compile else ():  # compile outside the timings
        t0 = time.time()
        timed_generate(use_cache=cached, compile=True)
        print(f"compile + first run ({'cache' if cached else 'recompute'}): {time.time() - t0:.1f} s")
    t = {v: 0.0 for v in variants}
    for _ in range(repeats):  # interleaved, so drifts in machine speed hit every variant alike
        for compiled, cached in variants:
            t[compiled, cached] += timed_generate(use_cache=cached, compile=compiled)[0]
    t_cache, t_full = t[False, True], t[False, False]
    print(f"\nsampling {n_tokens} tokens, no halting, {torch.get_num_threads()} threads:")
    print(f"  recompute window  {repeats * n_tokens / t_full:8.1f} tokens/s")
    print(f"  KV cache          {repeats * n_tokens / t_cache:8.1f} tokens/s   ({t_full / t_cache:.1f}x)")
    if use_compile:
        print(f"  compiled: recompute window  {repeats * n_tokens / t[True, False]:8.1f} tokens/s")
        print(f"  compiled: KV cache          {repeats * n_tokens / t[True, True]:8.1f} tokens/s   "
              f"({t[True, False] / t[True, True]:.1f}x of compiled recompute, {t_full / t[True, True]:.1f}x of eager)")

    # -- halting vs none, with the cache
    if model.q_head is None or n_sup == 1:
        sys.exit("\nno halting to measure: the model has no q-head or runs a single supervision step")
    t_halt, used = timed_generate(use_cache=True, halt_threshold=halt_threshold)
    print(f"  KV cache + halting {n_tokens / t_halt:7.1f} tokens/s   ({t_cache / repeats / t_halt:.2f}x of no halting), "
          f"steps per token {used.float().mean():.2f} of {n_sup} "
          f"-> {(1 - used.float().mean().item() / n_sup) * 100:.1f}% fewer net calls")

    # -- val loss of teacher-forced decoding, with and without halting, on random windows of the val split
    X, Y = val_windows(model, ckpt)
    loss_full, _ = halting_val_loss(model, X, Y, n_sup, 1.0)
    loss_halt, mean_steps = halting_val_loss(model, X, Y, n_sup, halt_threshold)
    print(f"\nteacher-forced val loss ({val_sequences} x {X.size(1)} tokens):")
    print(f"  all {n_sup} steps       {loss_full:.4f}")
    print(f"  halting at {halt_threshold}    {loss_halt:.4f} ({(loss_halt / loss_full - 1) * 100:+.2f}%), "
          f"steps per token {mean_steps:.2f} -> {(1 - mean_steps / n_sup) * 100:.1f}% fewer net calls")


def val_windows(model, ckpt):
    """val_sequences random windows of min(val_length, block_size) tokens of the checkpoint's val split
    (the same for every model of one dataset): inputs and targets."""
    L = min(val_length, model.config.block_size)
    try:
        val = lm.load(os.path.join('data', ckpt['config']['dataset']), {'block_size': L})
    except ValueError as e:
        sys.exit(f"error: {e}")
    ix = torch.randint(val['length']['val'] - L, (val_sequences,), generator=torch.Generator().manual_seed(config['seed']))
    return (t.to(device) for t in lm.get_batch(val, 'val', ix)[:2])


def halting_val_loss(model, X, Y, n_sup, threshold):
    """Teacher-forced val loss of every token at its halting step (model.halted's definition, over whole
    windows: what decoding token by token gives, tests/test_generate.py) and the mean steps per token."""
    with ctx:
        logits, used = decode(model, X, None, 0, n_sup, threshold)
    return F.cross_entropy(logits.float().flatten(0, 1), Y.flatten()).item(), used.float().mean().item()


def halting_curve(out_dirs):
    """Val loss against the blocks each token runs through (n_layer x net calls, what its FLOPs scale
    with), for language-model checkpoints: every token running 1..n_sup steps, then halting at each of
    halt_thresholds; a table and a plot. A plain GPT is one point."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    thresholds = [float(t) for t in halt_thresholds.split(',') if t]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    print("| model | steps run | halt_threshold | steps per token | block calls per token | val loss | vs all steps |")
    print("|---|---|---|---|---|---|---|")
    for out_dir in out_dirs:
        try:
            model, ckpt = checkpoint.load_model(os.path.join(out_dir, ckpt_name), device, config['use_ema'])
        except (FileNotFoundError, ValueError) as e:
            sys.exit(f"error: {e}")
        if ckpt['task'] != 'lm':
            sys.exit(f"error: {out_dir} holds a {ckpt['task']} checkpoint; the halting curve is for language models")
        cfg, n_sup = model.config, n_sup_inference or model.n_sup
        blocks = sites_per_step(cfg)  # block calls of one supervision step (one per attention site)
        X, Y = val_windows(model, ckpt)
        # every token runs k = 1..n_sup steps (what halting must beat), then halting over n_sup steps
        fixed = [(k * blocks, halting_val_loss(model, X, Y, k, 1.0)[0]) for k in range(1, n_sup + 1)]
        full = fixed[-1][1]
        for k, (calls, loss) in enumerate(fixed, 1):
            print(f"| {out_dir} | {k} | never | {k:.2f} | {calls:.2f} | {loss:.4f} | {(loss / full - 1) * 100:+.2f}% |")
        points = []
        for t in thresholds if model.q_head is not None and n_sup > 1 else []:
            loss, steps = halting_val_loss(model, X, Y, n_sup, t)
            points.append((steps * blocks, loss))
            print(f"| {out_dir} | {n_sup} | {t} | {steps:.2f} | {steps * blocks:.2f} | {loss:.4f} | "
                  f"{(loss / full - 1) * 100:+.2f}% |")
        name = os.path.basename(os.path.normpath(out_dir))
        label = f"{name}: 1..{n_sup} steps" if cfg.recursion else f"{name}: plain GPT, {cfg.n_layer} layers"
        line = ax.plot(*zip(*fixed), 's--' if len(fixed) > 1 else 's', label=label)[0]
        if points:
            ax.plot(*zip(*points), 'o-', color=line.get_color(), label=f"{name}: halting over {n_sup} steps")
    ax.set_xlabel('block calls per token (FLOPs per token / a block\'s)')
    ax.set_ylabel(f'val loss ({val_sequences} x {X.size(1)} tokens, teacher-forced)')
    ax.set_title(f'fixed steps, and halting at thresholds {halt_thresholds}', fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(plot_path, dpi=100)
    print(f"wrote {plot_path}")


# -----------------------------------------------------------------------------
if presets:
    preset_table()
elif estimate:
    estimate_run()
elif ablate:  # ablate.py's grid runner, with the train.py keys given here (not bench.py's own)
    missing = run_ablation(ablate, [a for a in sys.argv[1:] if a.startswith('--') and a[2:].split('=')[0] in DEFAULTS
                                    and a[2:].split('=')[0] not in BENCH_KEYS], ablate_dir)
    sys.exit(1 if missing else 0)  # as ablate.py: a run that failed makes the grid fail
elif sample:
    sampling()
elif halting:
    halting_curve(halting.split(','))
else:
    throughput()
