"""
Sample from a trained recursive GPT, with a KV cache over every attention site of the recursion.

    python sample.py --out_dir=out-shakespeare-char --start="ROMEO:"
    python sample.py --start=FILE:prompt.txt --num_samples=1 --max_new_tokens=1000
    python sample.py --n_sup_inference=4 --halt_threshold=0.5   # more steps, halting once q says "right"
    python sample.py --compile=True --max_new_tokens=5000       # long samples: compile the cached step

Puzzle checkpoints (trained on data/sudoku, data/maze or data/arc) solve one puzzle instead:

    python sample.py --out_dir=out-sudoku-cpu --puzzle=4.....8.5.3..........7......2.....6.....8.4......1.......6.3.7.5..2.....1.4......
    python sample.py --out_dir=out-tiny-puzzle-maze --puzzle=maze.txt --puzzle_steps=True   # the answer after every step
    python sample.py --out_dir=out-tiny-puzzle-arc --puzzle=00576224.json --arc_test=0

Text formats: see puzzles.TEXT_FORMATS.
"""
import json
import os
import pickle
import sys
import time
from contextlib import nullcontext

import torch

from configurator import ConfigError, configure
import puzzles
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
# puzzles
puzzle = ''               # the puzzle to solve (Sudoku: 81 characters; maze, ARC: a file): needs a puzzle checkpoint
puzzle_steps = False      # print the answer after every supervision step, not only the last
arc_test = 0              # ARC task files: which test pair to solve
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

n_sup = n_sup_inference or model.n_sup

# ---- puzzles: one puzzle in; the answer after each supervision step, the halting step and a rule verdict out
cfg = model.config
kind = None if cfg.causal else puzzles.KINDS.get((cfg.vocab_size, cfg.block_size))
if bool(puzzle) != bool(kind):
    sys.exit(f"error: {ckpt_path} is a puzzle checkpoint ({kind}): give the puzzle with --puzzle=..." if kind else
             f"error: --puzzle needs a checkpoint trained on puzzles (data/sudoku, data/maze or data/arc); "
             f"{ckpt_path} is not one")
if puzzle:
    text = puzzle
    if os.path.isfile(puzzle):
        with open(puzzle, encoding='utf-8') as f:
            text = f.read()
    elif kind != 'sudoku':
        sys.exit(f"error: --puzzle={puzzle}: no such file; a {kind} puzzle is {puzzles.TEXT_FORMATS[kind]}")
    try:
        x, expected = puzzles.parse_puzzle(kind, text, arc_test)
    except ValueError as e:
        sys.exit(f"error: --puzzle: {e}")
    # the puzzle embedding row: ARC tasks have their own (under augmentation 0, the identity), others use row 0
    emb_id = 0
    if kind == 'arc' and cfg.puzzle_emb_ndim:
        task_id = os.path.splitext(os.path.basename(puzzle))[0]
        meta_path = os.path.join('data', ckpt['config']['dataset'], 'meta.json')
        names = []
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                names = json.load(f)['puzzle_names']
        known = [i for i, name in enumerate(names) if name.split('/')[-1] == task_id]
        if not known:
            sys.exit(f"error: task {task_id} is not one the model was trained on (the puzzle_names of {meta_path}): "
                     f"a model with a puzzle embedding only solves its training tasks; name the file <task id>.json")
        emb_id = known[0] * ckpt['config']['arc_n_aug']
    X = torch.tensor(x, device=device)[None]
    P = torch.tensor([emb_id], device=device)
    answers, halt_step = [], None
    with torch.no_grad(), ctx:
        for logits, q in model.supervision_steps(X, n_sup, puzzle_ids=P):
            answers.append(logits.argmax(-1)[0].cpu().numpy())
            if halt_step is None and q is not None and q.item() > 0:
                halt_step = len(answers)  # the q-head says "right": where training and eval halt
            if q is not None and torch.sigmoid(q.float()).item() > halt_threshold:
                break
    print(f"{kind} puzzle:\n{puzzles.puzzle_text(kind, x)}\n")
    for s, answer in enumerate(answers, 1):
        if puzzle_steps or s == len(answers):
            print(f"answer after supervision step {s} of {n_sup}:\n{puzzles.puzzle_text(kind, answer)}")
            print(puzzles.puzzle_verdict(kind, x, answer, expected) + '\n')
    print(f"halting: the q-head says the answer is right from step {halt_step}" if halt_step else
          "halting: the q-head never says the answer is right" if model.q_head is not None else
          "halting: the model has no q-head")
    sys.exit(0)

# ---- text: tokenizer: the dataset's meta.pkl for char-level models, GPT-2 BPE otherwise
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
with torch.no_grad(), ctx:
    for k in range(num_samples):
        t0 = time.time()
        y, steps = model.generate(x, max_new_tokens, temperature=temperature, top_k=top_k, n_sup=n_sup,
                                  halt_threshold=halt_threshold, use_cache=use_cache, compile=compile)
        dt = time.time() - t0
        print(decode(y[0].tolist()))
        print(f"---------------  {max_new_tokens / dt:.1f} tokens/s, supervision steps per token: "
              f"mean {steps.float().mean():.2f} of {n_sup} (min {steps.min()}, max {steps.max()})")
