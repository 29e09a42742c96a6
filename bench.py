"""
Benchmarks, measured as ratios within one run (shared machines are noisy).

Sampling from a checkpoint: KV cache vs recomputing the window for every token, and
adaptive halting vs always running n_sup steps (net calls per token, and the val loss
of teacher-forced decoding under the same halting rule):

    python bench.py --out_dir=out-shakespeare-char
    python bench.py --out_dir=out-shakespeare-char --compile=True   # also with torch.compile'd steps
    python bench.py --out_dir=out-nsup4 --halt_threshold=0.5 --n_tokens=256

Sizes of the language-model presets A-D and their baselines (README's table), without a checkpoint:

    python bench.py --presets=True
"""
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from configurator import ConfigError, configure
from model import KVCache, load_model

# -----------------------------------------------------------------------------
out_dir = 'out-shakespeare-char'
ckpt_name = 'ckpt.pt'
use_ema = True
n_tokens = 256            # tokens generated per timing
repeats = 2               # cache / no-cache timings alternate this many times
halt_threshold = 0.5      # halting rule measured against no halting
n_sup_inference = 0       # 0 = as trained
val_sequences = 4         # teacher-forced val sequences for the halting val loss
val_length = 128
seed = 1337
device = 'cpu'
compile = False           # also time generate(compile=True), cache and recompute (compile time excluded)
threads = 0               # torch threads; 0 = torch's default
presets = False           # print the presets table instead
# -----------------------------------------------------------------------------
try:
    globals().update(configure(globals(), sys.argv[1:]))
except ConfigError as e:
    sys.exit(f"error: {e}")


def preset_table():
    """Per preset: parameters, training FLOPs per token (recursion counted), memory per sequence and the
    largest micro-batch in 24/40/80 GB. Models are built on the meta device (no memory, no compute);
    activation memory is what autograd saves in one supervision step under bf16 autocast, measured with
    saved-tensor hooks as the difference between micro-batches of 2 and 1."""
    from configurator import script_defaults
    from model import GPT, GPTConfig
    defaults = script_defaults(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'train.py'))
    print("| preset | params (non-emb) | emb | GFLOPs/token (train) | activations/seq | weights+grads+AdamW "
          "| micro-batch 24 / 40 / 80 GB |")
    print("|---|---|---|---|---|---|---|")
    for name in ('conservative', 'conservative_plain', 'balanced', 'balanced_plain', 'aggressive',
                 'aggressive_plain', 'cloud', 'cloud_plain'):
        c = configure(defaults, [os.path.join('config', f'{name}.py')])
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


if presets:
    preset_table()
    sys.exit(0)
torch.manual_seed(seed)
if threads:
    torch.set_num_threads(threads)
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
