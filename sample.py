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

Text formats: see puzzles.TEXT_FORMATS. Control checkpoints roll out from x0 to target against the optimum:

    python sample.py --out_dir=out-control --x0=1.5,0 --target=-1,0   # printed and plotted
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
# control checkpoints: num_samples rollouts, each from x0 to target (comma-separated states; '' = random
# from the system's boxes), printed against the optimum and plotted
x0 = ''
target = ''
plot = ''                 # PNG path; '' = <out_dir>/control.png
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

# ---- control: a control checkpoint rolls the predicted controls out against the optimum (printed and plotted)
if model.config.n_outputs:
    import importlib.util
    from types import SimpleNamespace
    import numpy as np
    import control
    system = ckpt['system']
    H, n, m = system['horizon'], system['n_state'], system['n_control']
    spec = importlib.util.spec_from_file_location('prepare', os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                          'data', 'control', 'prepare.py'))
    prep = importlib.util.module_from_spec(spec)  # the solvers that made the training data
    spec.loader.exec_module(prep)
    rng = np.random.default_rng(seed)
    states = {}
    for key, text in (('x0', x0), ('target', target)):
        try:
            v = [float(t) for t in text.split(',')] if text else None
        except ValueError:
            v = []
        if v is not None and len(v) != n:
            sys.exit(f"error: --{key}={text!r} must be {n} comma-separated numbers (a state of {system['name']}), "
                     f"e.g. --{key}={','.join(['0.5'] * n)}; leave it out for random states")
        states[key] = (np.tile(v, (num_samples, 1)) if v else
                       prep.sample_states(rng, system[f'{key}_low'], system[f'{key}_high'], num_samples))
    x0_t, tgt_t = torch.tensor(states['x0']), torch.tensor(states['target'])
    X = torch.tensor(control.make_features(states['x0'], states['target'], H), device=device)
    with torch.no_grad(), ctx:
        steps = [(u.float().cpu().double(), q) for u, q in model.supervision_steps(X, n_sup)]
    used = torch.full((num_samples,), n_sup)  # a row stops at its first step with sigmoid(q) > halt_threshold
    for s, (_, q) in reversed(list(enumerate(steps))):
        if q is not None and halt_threshold < 1.0:
            used = torch.where(torch.sigmoid(q.float()).cpu() > halt_threshold, s + 1, used)
    u_pred = torch.stack([u for u, _ in steps])[used - 1, torch.arange(num_samples)]
    u_opt = torch.tensor(prep.solve_split(system, states['x0'], states['target'],
                                          SimpleNamespace(restarts=18, num_proc=1), [seed])[0])
    u_pred = control.clip_controls(system, u_pred)  # what the system can apply (and what the metrics roll out)
    xs_p, xs_o = control.rollout(system, x0_t, u_pred), control.rollout(system, x0_t, u_opt)
    J_p, J_o = control.cost(system, xs_p, u_pred, tgt_t), control.cost(system, xs_o, u_opt, tgt_t)
    fmt = lambda v: ' '.join(f'{a:7.3f}' for a in v)
    for i in range(num_samples):
        print(f"{system['name']} {i + 1}: x0 [{fmt(x0_t[i])}] -> target [{fmt(tgt_t[i])}], {used[i]} of {n_sup} steps")
        print(f"  t  u pred / u opt  |  x pred / x opt")
        for t in range(H + 1):
            u_cols = f"{fmt(u_pred[i, t])} {fmt(u_opt[i, t])}" if t < H else ' ' * (16 * m - 1)
            print(f"{t:3d}  {u_cols}  |  {fmt(xs_p[i, t])}  {fmt(xs_o[i, t])}")
        err_p, err_o = (xs_p[i, -1] - tgt_t[i]).norm().item(), (xs_o[i, -1] - tgt_t[i]).norm().item()
        print(f"cost {J_p[i]:.4f}, optimal {J_o[i]:.4f}: ratio {J_p[i] / J_o[i]:.4f}; final error {err_p:.4f} "
              f"(optimal {err_o:.4f}; within {system['success_tol']}: {err_p <= system['success_tol']})\n")
    ratio_s = [control.metrics(system, x0_t, tgt_t, u, u_opt)['cost_ratio'] for u, _ in steps]
    print("mean cost ratio per supervision step: " + ' '.join(f'{r:.4f}' for r in ratio_s))
    import matplotlib
    matplotlib.use('Agg')  # writes files, needs no display
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(n + m, 1, figsize=(7, 2 * (n + m)), sharex=True)
    tx = np.arange(H + 1) * system['dt']
    for i in range(num_samples):
        c = f'C{i % 10}'
        for d in range(n):
            axes[d].plot(tx, xs_p[i, :, d], color=c, label='predicted' if i == 0 else None)
            axes[d].plot(tx, xs_o[i, :, d], color=c, ls='--', label='optimal' if i == 0 else None)
            axes[d].axhline(tgt_t[i, d], color=c, lw=0.6, ls=':')
            axes[d].set_ylabel(f'state {d}')
        for k in range(m):
            for u, ls in ((u_pred, '-'), (u_opt, '--')):  # zero-order hold: the last value held to t = H dt
                axes[n + k].step(tx, np.r_[u[i, :, k], u[i, -1, k]], where='post', color=c, ls=ls)
            axes[n + k].set_ylabel(f'control {k}')
    axes[0].legend(loc='best')
    axes[-1].set_xlabel('time (s)')
    axes[0].set_title(f"{system['name']}: predicted (solid) vs optimal (dashed), mean cost ratio {(J_p / J_o).mean():.3f}",
                      fontsize=10)
    fig.tight_layout()
    plot = plot or os.path.join(out_dir, 'control.png')
    fig.savefig(plot, dpi=100)
    print(f"plot: {plot}")
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
