"""
Sample text from a trained recursive GPT, with a KV cache over every attention site of the recursion.

    python sample.py --out_dir=out-shakespeare-char --start="ROMEO:"
    python sample.py --start=FILE:prompt.txt --num_samples=1 --max_new_tokens=1000
    python sample.py --n_sup_inference=4 --halt_threshold=0.5   # more steps, halting once q says "right"
    python sample.py --compile=True --max_new_tokens=5000       # long samples: compile the cached step
    python sample.py --memory_write_threshold=3.0               # surprising tokens (> 3 nats) write to the memory

Puzzle and control checkpoints are solved and rolled out by solve.py.
"""
import os
import pickle
import sys
import time

import torch

import checkpoint
from common import or_exit, runtime
from configurator import DEVICE, DTYPE, at_least, fraction, from_command_line, none_or
from generate import check_memory_writes, generate
from lm import GPT2_VOCAB, tokenizer

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
dtype = ''                # '' = auto, as train.py: bfloat16 where the hardware does it natively, else float32
use_ema = True            # sample with the EMA weights (what eval used)
n_sup_inference = 0       # supervision steps per token; 0 = as trained
halt_threshold = 1.0      # stop a token's steps once sigmoid(q) > this; 1.0 = never halt
use_cache = True
compile = False           # torch.compile the one-token step: ~2x faster tokens after a 5-60 s first compile
memory_write_threshold = None  # nats: a token more surprising than this writes to the memory bank (memory_slots
                               # models; each sample starts from the trained bank); None = no writes
memory_write_rate = 0.1   # how far a write moves its slot toward the token
# -----------------------------------------------------------------------------
RULES = {'num_samples': at_least(1), 'max_new_tokens': at_least(1), 'temperature': at_least(0, "0 = greedy"),
         'top_k': none_or(at_least(1)), 'n_sup_inference': at_least(0, "0 = as trained"), 'halt_threshold': fraction(),
         'memory_write_threshold': none_or(at_least(0)), 'memory_write_rate': fraction(), 'device': DEVICE, 'dtype': DTYPE}
globals().update(from_command_line(globals(), __file__, rules=RULES))
torch.manual_seed(seed)
device, device_type, dtype, ctx = or_exit(runtime, device, dtype)

model, ckpt, ckpt_path = checkpoint.load_or_exit(out_dir, ckpt_name, device, use_ema)
if ckpt['task'] != 'lm':
    sys.exit(f"error: {ckpt_path} is a {ckpt['task']} checkpoint: solve with it by "
             f"`python solve.py --out_dir={out_dir}`; sample.py generates text")
or_exit(check_memory_writes, model, memory_write_threshold, use_cache, compile)
n_sup = n_sup_inference or model.n_sup

# the tokenizer: the vocabulary the checkpoint carries (older checkpoints: the dataset's meta.pkl), else GPT-2 BPE
meta = ckpt.get('meta')
if 'meta' not in ckpt:
    meta_path = os.path.join('data', ckpt['config'].get('dataset', ''), 'meta.pkl')
    if os.path.exists(meta_path):
        with open(meta_path, 'rb') as f:
            meta = pickle.load(f)
    elif ckpt['model_args']['vocab_size'] != GPT2_VOCAB:
        sys.exit(f"error: {ckpt_path} has a {ckpt['model_args']['vocab_size']}-token vocabulary that it does not "
                 f"carry, and {meta_path} is gone; prepare that dataset again")
encode, decode = tokenizer(meta)

if start.startswith('FILE:'):
    try:
        with open(start[5:], encoding='utf-8') as f:
            start = f.read()
    except (OSError, UnicodeDecodeError) as e:
        sys.exit(f"error: --start=FILE:{start[5:]}: {getattr(e, 'strerror', None) or e}; give a readable UTF-8 text file")
x = or_exit(lambda: torch.tensor(encode(start), dtype=torch.long, device=device)[None, ...])
if x.size(1) == 0:
    sys.exit("error: the prompt is empty; give --start=TEXT or --start=FILE:path")
with torch.no_grad(), ctx:
    for k in range(num_samples):
        t0 = time.time()
        y, steps = generate(model, x, max_new_tokens, temperature=temperature, top_k=top_k, n_sup=n_sup,
                            halt_threshold=halt_threshold, use_cache=use_cache, compile=compile,
                            memory_write_threshold=memory_write_threshold, memory_write_rate=memory_write_rate)
        dt = time.time() - t0
        print(decode(y[0].tolist()))
        print(f"---------------  {max_new_tokens / dt:.1f} tokens/s, supervision steps per token: "
              f"mean {steps.float().mean():.2f} of {n_sup} (min {steps.min()}, max {steps.max()})")
