"""
Sample from a trained recursive GPT, with a KV cache over every attention site of the recursion.

    python sample.py --out_dir=out-shakespeare-char --start="ROMEO:"
    python sample.py --start=FILE:prompt.txt --num_samples=1 --max_new_tokens=1000
    python sample.py --n_sup_inference=4 --halt_threshold=0.5   # more steps, halting once q says "right"
    python sample.py --compile=True --max_new_tokens=5000       # long samples: compile the cached step
"""
import os
import pickle
import sys
import time
from contextlib import nullcontext

import torch

from configurator import ConfigError, configure
from model import load_model

# -----------------------------------------------------------------------------
out_dir = 'out-shakespeare-char'
ckpt_name = 'ckpt.pt'     # or best.pt
start = "\n"              # prompt, or FILE:path to read it from a file
num_samples = 3
max_new_tokens = 500
temperature = 0.8         # 0: greedy
top_k = 200
seed = 1337
device = ''               # '' = auto: cuda > mps > cpu
use_ema = True            # sample with the EMA weights (what eval used)
n_sup_inference = 0       # supervision steps per token; 0 = as trained
halt_threshold = 1.0      # stop a token's steps once sigmoid(q) > this; 1.0 = never halt
use_cache = True
compile = False           # torch.compile the one-token step: ~2x faster tokens after a 5-60 s first compile
# -----------------------------------------------------------------------------
try:
    globals().update(configure(globals(), sys.argv[1:]))
except ConfigError as e:
    sys.exit(f"error: {e}")
torch.manual_seed(seed)
if not device:
    device = 'cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu'
device_type = 'cuda' if 'cuda' in device else 'mps' if 'mps' in device else 'cpu'
ctx = torch.autocast(device_type, dtype=torch.bfloat16) if device_type == 'cuda' else nullcontext()

ckpt_path = os.path.join(out_dir, ckpt_name)
try:
    model, ckpt = load_model(ckpt_path, device, use_ema)
except FileNotFoundError as e:
    sys.exit(f"error: {e}")

# tokenizer: the dataset's meta.pkl for char-level models, GPT-2 BPE otherwise
meta_path = os.path.join('data', ckpt['config'].get('dataset', ''), 'meta.pkl')
meta = {}
if os.path.exists(meta_path):
    with open(meta_path, 'rb') as f:
        meta = pickle.load(f)
if 'stoi' in meta:
    stoi, itos = meta['stoi'], meta['itos']
    def encode(s):
        unknown = sorted(set(c for c in s if c not in stoi))
        if unknown:
            sys.exit(f"error: the prompt has characters outside the model's vocabulary: {unknown!r}; remove them")
        return [stoi[c] for c in s]
    decode = lambda ids: ''.join(itos[i] for i in ids)
else:
    import tiktoken
    enc = tiktoken.get_encoding('gpt2')
    encode = lambda s: enc.encode(s, allowed_special={'<|endoftext|>'})
    decode = lambda ids: enc.decode([i for i in ids if i < enc.n_vocab])  # the padded vocab's extra ids are not text

if start.startswith('FILE:'):
    with open(start[5:], encoding='utf-8') as f:
        start = f.read()
x = torch.tensor(encode(start), dtype=torch.long, device=device)[None, ...]
n_sup = n_sup_inference or model.n_sup
with torch.no_grad(), ctx:
    for k in range(num_samples):
        t0 = time.time()
        y, steps = model.generate(x, max_new_tokens, temperature=temperature, top_k=top_k, n_sup=n_sup,
                                  halt_threshold=halt_threshold, use_cache=use_cache, compile=compile)
        dt = time.time() - t0
        print(decode(y[0].tolist()))
        print(f"---------------  {max_new_tokens / dt:.1f} tokens/s, supervision steps per token: "
              f"mean {steps.float().mean():.2f} of {n_sup} (min {steps.min()}, max {steps.max()})")
