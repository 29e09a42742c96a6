"""
Train a recursive GPT (TRM-style) with deep supervision.

    python train.py                                   # small recursive char model, ~5 min on a 2-core CPU
    python train.py config/shakespeare_char_plain.py  # the recursion-off baseline
    python train.py --n_sup=4 --T_recursion=2         # any default below can be overridden
    python train.py config/control.py                 # control: double integrator, optimal controls by LQR

Every default below is a config key (see configurator.py). Each batch runs n_sup
supervision steps; each step gets its own loss and its own backward, so memory
holds one step's graph (the `batch` schedule of DESIGN.md).
"""
import gc
import json
import math
import os
import shutil
import signal
import sys
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_optimizer_state_dict)
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel as DDP

import control
import puzzles
from configurator import ConfigError, configure
from ema import EMA
from model import GPT, GPTConfig, data_model_args, from_official_trm

# -----------------------------------------------------------------------------
# I/O
out_dir = 'out-shakespeare-char'
eval_interval = 500
log_interval = 50
eval_iters = 20
eval_only = False
always_save_checkpoint = True
init_from = 'scratch'  # 'scratch', 'resume' (from out_dir/ckpt.pt), or 'trm:PATH' (weights saved by the official TRM code)
seed = 1337
# logging
wandb_log = False
wandb_project = 'nanotrm'
wandb_run_name = 'shakespeare-char'
# data: the task follows from the folder data/<dataset>: train.bin (language model) or meta.json (puzzles, control)
dataset = 'shakespeare_char'
batch_size = 8     # small batches, many steps: the fastest way down at this size on a CPU
block_size = 128
gradient_accumulation_steps = 1
# model: a small recursive net, 2 layers x (n_loops + 1) calls x T cycles x n_sup steps. The cheapest
# recursion wins at equal wall-clock on char-level Shakespeare: measured, n_sup=2 costs 2x per token and its
# second step gains nothing at this size (README); raise n_sup/T/n_loops to study them.
n_layer = 2
n_head = 4
n_kv_head = 2
n_embd = 128
mlp = 'swiglu'
expansion = 4.0
norm = 'rmsnorm'
norm_position = ''  # '' = post with recursion (TRM), pre without (plain GPT)
norm_eps = 1e-5
rope_theta = 10000.0
dropout = 0.0
bias = False
tie_weights = False
recursion = True
n_loops = 1
T_recursion = 1
n_sup = 1
learnable_inits = False
act = True
mixer = 'attention'     # or mlp_t: TRM's MLP over the sequence axis, for small fixed grids (Sudoku)
puzzle_emb_ndim = 0     # > 0: a learned per-puzzle embedding laid over a prefix of the sequence (ARC)
puzzle_emb_len = 0      # its positions (0: ceil(puzzle_emb_ndim / n_embd))
trm_faithful = False    # compute exactly what the official TRM code computes (see model.py)
# deep supervision: loss = sum_s w_s loss_s + improvement term + ACT term
supervision_weight_base = 1.0   # w_s ~ base ** ((s-1)/(n_sup-1)); 1 = uniform
improvement_reward_scale = 0.0  # * mean_s relu(loss_s - loss_{s-1}.detach())
act_loss_weight = 0.5           # * sum_s w_s BCE(q_s, "argmax is right")
loss = 'softmax'                # softmax | stablemax (TRM's cross-entropy for puzzles: s(x) = x+1 or 1/(1-x))
# schedule: batch = n_sup steps per batch, one optimizer step (LM default); trm = one optimizer step per
# supervision step, (y, z) carried across batches, halted rows replaced by fresh ones (the TRM paper's)
schedule = ''                   # '' = trm for puzzles, batch otherwise
halt_exploration_prob = 0.1     # trm: how often a row draws a random minimum number of steps before halting
puzzle_emb_lr = 0.0             # the puzzle embedding's learning rate (0 = learning_rate; TRM: 1e-2)
puzzle_emb_weight_decay = 0.1
arc_n_aug = 512                 # ARC: augmentations per task, each its own puzzle embedding
arc_eval_votes = 8              # ARC eval: each test pair solved under this many augmentations, voted (pass@1/@2)
arc_eval_pairs = 0              # ARC eval: test pairs scored for pass@k (0 = all)
# control (data/control/<system>): loss = MSE to the optimal controls + rollout_loss_weight * mean log(J / J*)
rollout_loss_weight = 0.0       # the rollout term weighs control errors by what they cost (control.rollout_loss)
act_cost_tol = 0.02             # q learns "the rollout ends within the system's success_tol, at J <= (1 + this) J*"
# optimizer: AdamW, warmup + cosine
learning_rate = 3e-3
max_iters = 5000
max_seconds = 0.0  # > 0: a wall-clock budget (evals included): the lr cosine spans it; when spent, the run evaluates, saves, stops
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.99
grad_clip = 1.0
decay_lr = True
warmup_iters = 50
lr_decay_iters = 5000
min_lr = 3e-4
# EMA of weights: used for eval and the best checkpoint
use_ema = True
ema_decay = 0.999
# faults: a step with a non-finite loss or gradient is skipped; this many in a row stop the run
max_nonfinite_steps = 10
# system
device = ''    # '' = auto: cuda > mps > cpu
dtype = ''     # '' = auto: bfloat16 where native (Ampere+, AMX/AVX512-BF16 CPUs), float16 on older CUDA, else float32
compile = True  # inductor works on CPU too: ~20 s to compile (cached after), ~1.3x faster steps
fsdp = False    # under torchrun: shard weights, gradients and optimizer state over the ranks (FSDP2) instead of DDP
# -----------------------------------------------------------------------------
try:
    config = configure(globals(), sys.argv[1:])  # what is logged and checkpointed
except ConfigError as e:
    sys.exit(f"error: {e}")
globals().update(config)

# distributed: torchrun sets RANK, LOCAL_RANK, WORLD_SIZE; NCCL on GPUs, gloo on CPU
ddp = 'RANK' in os.environ
rank, local_rank, world_size = (int(os.environ[k]) for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE')) if ddp else (0, 0, 1)
master = rank == 0  # logs, writes metrics and checkpoints
if gradient_accumulation_steps % world_size:
    sys.exit(f"error: gradient_accumulation_steps={gradient_accumulation_steps} must be divisible by the "
             f"{world_size} processes (it counts micro-batches of the whole job)")
gradient_accumulation_steps //= world_size  # per process
if not device:
    device = 'cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu'
    if device == 'cuda' and ddp:
        device = f'cuda:{local_rank}'
device_type = 'cuda' if 'cuda' in device else 'mps' if 'mps' in device else 'cpu'
if fsdp and not ddp:
    sys.exit("error: fsdp=True shards over torchrun's processes; launch with torchrun, or drop --fsdp=True")
if ddp:
    if device_type == 'cuda':
        torch.cuda.set_device(device)
    dist.init_process_group(backend='nccl' if device_type == 'cuda' else 'gloo')
if master:
    os.makedirs(out_dir, exist_ok=True)
torch.manual_seed(seed)  # the same initial weights on every rank (FSDP shards them as they are)
if not dtype:
    if device_type == 'cuda':
        dtype = 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'
    elif device_type == 'cpu' and (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()):
        dtype = 'bfloat16'  # without AMX/AVX512-BF16, bf16 matmuls emulate and run slower than fp32
    else:
        dtype = 'float32'
ptdtype = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}[dtype]
ctx = nullcontext() if dtype == 'float32' else torch.autocast(device_type=device_type, dtype=ptdtype)
scaler = torch.amp.GradScaler(device_type, enabled=(dtype == 'float16'))
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True

# data: nanoGPT's format for LMs (uint16 tokens in train.bin / val.bin, optional meta.pkl); puzzles
# from data/{sudoku,maze,arc}/prepare.py (inputs/labels arrays + meta.json), augmented on the fly; control
# from data/control/prepare.py (features, optimal controls, the system in meta.json)
data_dir = os.path.join('data', dataset)
task, model_args = data_model_args(config)  # the model keys + what the data fixes (vocabulary, lengths, widths)
block_size = model_args['block_size']
# the second split picks the best checkpoint; control also reports its test split at every eval
splits = {'lm': ('train', 'val'), 'puzzle': ('train', 'test'), 'control': ('train', 'val', 'test')}[task]
schedule = schedule or ('trm' if task == 'puzzle' else 'batch')
if schedule == 'trm' and not recursion:  # a plain model has one step and no (y, z) to carry: the schedules coincide
    schedule = 'batch'
if schedule not in ('batch', 'trm') or loss not in ('softmax', 'stablemax'):
    sys.exit(f"error: schedule={schedule!r} / loss={loss!r}; use schedule 'batch' or 'trm', loss 'softmax' or 'stablemax'")
if schedule == 'trm' and task == 'lm':
    sys.exit("error: schedule='trm' halts whole sequences (puzzles, control); language models train with schedule='batch'")
if schedule == 'trm' and gradient_accumulation_steps != 1:
    sys.exit("error: schedule='trm' steps the optimizer after every supervision step of one micro-batch per "
             "process: set gradient_accumulation_steps to the number of processes")
if task == 'lm':
    for split in splits:
        if not os.path.exists(os.path.join(data_dir, f'{split}.bin')):
            sys.exit(f"error: {os.path.join(data_dir, split + '.bin')} not found; "
                     f"run `python data/{dataset}/prepare.py` first")
    split_len = {split: os.path.getsize(os.path.join(data_dir, f'{split}.bin')) // 2 for split in splits}
elif task == 'puzzle':
    try:
        pdata = {split: puzzles.load(data_dir, split) for split in splits}
    except ValueError as e:
        sys.exit(f"error: {e}")
    meta = pdata['train']['meta']
    n_aug = arc_n_aug if meta['augmentation'] == 'arc' else 1
    if meta['augmentation'] == 'arc' and not 1 <= arc_eval_votes <= n_aug:
        sys.exit(f"error: arc_eval_votes={arc_eval_votes} must be in 1..arc_n_aug={n_aug} (one vote per augmentation)")
    split_len = {split: len(pdata[split]['inputs']) for split in splits}
else:  # control: a few MB, held in memory as tensors
    try:
        cdata = {split: control.load(data_dir, split) for split in splits}
    except ValueError as e:
        sys.exit(f"error: {e}")
    meta = cdata['train']['system']
    split_len = {split: len(cdata[split]['features']) for split in splits}
    cdata = {split: {k: torch.from_numpy(cdata[split][k]) for k in ('features', 'targets')} for split in splits}
    for split, n in split_len.items():
        if n == 0:
            sys.exit(f"error: {data_dir} has no {split} examples; rerun `python data/control/prepare.py "
                     f"--system={meta['name']} --n_{split}=N` with N > 0")


def random_ix(split, generator, *shape):
    """Random sequence starts (LM) or puzzle rows."""
    return torch.randint(split_len[split] - (block_size if task == 'lm' else 0), shape, generator=generator)


def get_batch(split, ix, aug_seed=None):
    """(inputs, targets, puzzle ids or None) of the sequences starting at ix (LM) or of the puzzle/control rows ix,
    augmented with a generator seeded by aug_seed (None: no augmentation)."""
    if task == 'lm':
        # re-open the memmap every batch: a long-lived one keeps growing RSS
        data = np.memmap(os.path.join(data_dir, f'{split}.bin'), dtype=np.uint16, mode='r')
        buf = torch.from_numpy(data[ix.numpy()[:, None] + np.arange(block_size + 1)].astype(np.int64))
        x, y, p = buf[:, :-1], buf[:, 1:], None
    elif task == 'control':  # features [B, H, 2n+1] in, optimal controls [B, H, m] out
        x, y, p = cdata[split]['features'][ix], cdata[split]['targets'][ix], None
    else:
        b = puzzles.get_batch(pdata[split], ix.numpy(), np.random.default_rng(aug_seed), augment=aug_seed is not None,
                              n_aug=n_aug)
        x, y = torch.from_numpy(b['inputs']), torch.from_numpy(b['labels'])
        p = torch.from_numpy(b.get('emb_ids', np.zeros(len(ix), np.int64)))
    if device_type == 'cuda':
        return tuple(t.pin_memory().to(device, non_blocking=True) if t is not None else None for t in (x, y, p))
    return tuple(t.to(device) if t is not None else None for t in (x, y, p))


# model, optimizer, EMA: from scratch or from out_dir/ckpt.pt
ckpt_path = os.path.join(out_dir, 'ckpt.pt')
iter_num, best_val_loss, wandb_run_id, ckpt = 0, float('inf'), None, None
if init_from == 'resume':
    if not os.path.exists(ckpt_path):
        sys.exit(f"error: init_from='resume' but {ckpt_path} does not exist; train with init_from='scratch' first")
    try:
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
    except Exception as e:  # truncated, corrupted, or not a checkpoint of ours: say so in one line
        sys.exit(f"error: cannot read {ckpt_path} ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                 f"restore it, or train from scratch into another out_dir")
    differ = {k: (ckpt['model_args'].get(k), v) for k, v in model_args.items() if ckpt['model_args'].get(k) != v}
    if differ:
        sys.exit("error: the config does not match the checkpoint's architecture: " +
                 ", ".join(f"{k}={new!r} (checkpoint: {old!r})" for k, (old, new) in differ.items()))
    iter_num, best_val_loss, wandb_run_id = ckpt['iter_num'], ckpt['best_val_loss'], ckpt.get('wandb_run_id')
elif init_from != 'scratch' and not init_from.startswith('trm:'):
    sys.exit(f"error: init_from={init_from!r}; use 'scratch', 'resume' or 'trm:PATH'")
try:
    model = GPT(GPTConfig(**model_args))
except ValueError as e:
    sys.exit(f"error: {e}")
if init_from.startswith('trm:'):  # evaluate or fine-tune an official TRM checkpoint
    try:
        model.load_state_dict(from_official_trm(torch.load(init_from[4:], map_location='cpu', weights_only=True), model))
    except (OSError, RuntimeError, ValueError) as e:
        sys.exit(f"error: {init_from[4:]}: {str(e).splitlines()[0][:300]} (set trm_faithful=True and the official "
                 f"run's sizes: n_embd, n_layer, n_head, mixer, puzzle_emb_ndim, puzzle_emb_len)")
ema = EMA(model, ema_decay) if use_ema else None
if ckpt is not None:  # checkpoints hold full (unsharded) tensors: load them before sharding
    model.load_state_dict(ckpt['model'])
    if ema is not None:
        ema.load_state_dict(ckpt['ema'])
for m in [model] + ([ema.model] if ema is not None else []):
    if fsdp:  # each block is one all-gather; the root holds the embeddings and heads
        for block in m.blocks:
            fully_shard(block)
        fully_shard(m)
    m.to(device)
optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), device_type, puzzle_emb_lr,
                                       puzzle_emb_weight_decay)
torch.manual_seed(seed + rank)  # dropout differs per rank; the data order does not (see random_ix)
train_gen = torch.Generator().manual_seed(seed)  # data order: its state is the data position
if ckpt is not None:
    # optimizer state is saved keyed by parameter name and unsharded, so it loads with or without FSDP
    set_optimizer_state_dict(model, optimizer, ckpt['optimizer'], options=StateDictOptions(full_state_dict=True))
    torch.set_rng_state(ckpt['rng']['torch'].cpu())
    train_gen.set_state(ckpt['rng']['data'].cpu())
    if device_type == 'cuda' and ckpt['rng'].get('cuda'):
        torch.cuda.set_rng_state_all([s.cpu() for s in ckpt['rng']['cuda']])
    ckpt = None  # free memory
raw_model = model
if compile:
    print("compiling the model...")
    model = torch.compile(model)
if ddp and not fsdp:
    model = DDP(model, device_ids=[local_rank] if device_type == 'cuda' else None)

S = raw_model.n_sup
sup_weights = [supervision_weight_base ** (s / max(S - 1, 1)) for s in range(S)]
sup_weights = [w / sum(sup_weights) for w in sup_weights]
tokens_per_iter = gradient_accumulation_steps * world_size * batch_size * block_size
if master:
    print(f"device {device}, dtype {dtype}, {raw_model.get_num_params() / 1e6:.2f}M non-embedding params, "
          f"{raw_model.flops_per_token() / 1e6:.1f} MFLOPs/token (training), {tokens_per_iter:,} tokens/iter"
          f" ({world_size} x {gradient_accumulation_steps} micro-batches of {batch_size} x {block_size})")


def cross_entropy(logits, Y):
    """Per-target cross-entropy [B, L], 0 where Y is ignored (-100)."""
    if loss == 'softmax':
        return F.cross_entropy(logits.float().transpose(1, 2), Y, reduction='none')
    return puzzles.stablemax_cross_entropy(logits, Y)


def step_losses(logits, q, X, Y):
    """Loss of one supervision step (LM: mean over tokens; puzzles: mean per puzzle, then over puzzles, as
    TRM; control: control.step_losses), the ACT BCE and the q-head's accuracy when there is a q-head. q
    predicts whether the step's answer is already right: per token (LM), or the whole puzzle (q per
    sequence); for control, whether the rollout is within tolerance (control.good_enough)."""
    if task == 'control':
        return control.step_losses(meta, X, logits, q, Y, rollout_loss_weight, act_cost_tol)
    mask = Y != -100
    ce = cross_entropy(logits, Y)
    loss = (ce.sum(1) / mask.sum(1).clamp(min=1)).mean() if task == 'puzzle' else ce.sum() / mask.sum()
    if q is None:
        return loss, None, None
    correct = (logits.argmax(-1) == Y) | ~mask
    target = correct.all(1) if q.dim() == 1 else correct[mask]
    q = q.float() if q.dim() == 1 else q[mask].float()
    bce = F.binary_cross_entropy_with_logits(q, target.float())
    return loss, bce, ((q > 0) == target).float().mean()


def step_objective(s, loss, bce, prev):
    """What supervision step s adds to the batch schedule's objective: weighted loss, ACT and improvement terms."""
    total = sup_weights[s] * loss
    if bce is not None:
        total = total + act_loss_weight * sup_weights[s] * bce
    if prev is not None and improvement_reward_scale > 0:
        total = total + improvement_reward_scale / (S - 1) * F.relu(loss - prev)
    return total


def train_batch(X, Y, P, last_micro_step=True):
    """The batch schedule: n_sup supervision steps on one micro-batch, each with its own backward.
    Returns the step losses."""
    y = z = None  # the model starts from its y/z inits
    prev, losses = None, []
    for s in range(S):
        # DDP all-reduces gradients once per iteration, in the last backward of the last micro-step;
        # FSDP reduce-scatters after every backward, so that no rank ever holds full gradients
        if ddp and not fsdp:
            model.require_backward_grad_sync = last_micro_step and s == S - 1
        with ctx:
            logits, q, y, z = model(X, y, z, puzzle_ids=P)
            loss, bce, _ = step_losses(logits, q, X, Y)
            total = step_objective(s, loss, bce, prev)
        scaler.scale(total / gradient_accumulation_steps).backward()
        prev = loss.detach()
        losses.append(prev)
    return torch.stack(losses)


carry = None  # the trm schedule's rows in flight: their data, (y, z), steps taken, halted or not


def train_trm_step(X, Y, P):
    """The trm schedule: one supervision step on the rows in flight, after the halted ones were replaced
    by rows of this fresh batch (puzzles.refill_carry). Returns the step's loss; the caller steps the
    optimizer."""
    global carry
    c = puzzles.refill_carry(carry, {'X': X, 'Y': Y, 'P': P}, raw_model.yz_init, raw_model.config.seq_len)
    steps = c['steps'] + 1
    with ctx:
        logits, q, y, z = model(c['X'], c['y'], c['z'], puzzle_ids=c.get('P'))
        loss, bce, _ = step_losses(logits, q, c['X'], c['Y'])
        total = loss + act_loss_weight * bce if bce is not None else loss
    scaler.scale(total).backward()
    carry = dict(c, y=y, z=z, steps=steps, halted=puzzles.halted_after_step(steps, q, S, halt_exploration_prob))
    return loss.detach()[None]


@torch.no_grad()
def evaluate(m):
    """Mean loss and ACT accuracy at every supervision step, on fixed batches of each split; for puzzles
    and control (every row runs all n_sup steps) the mean halting step (the first step with q > 0, else
    n_sup) and its histogram; for puzzles also exact (whole-puzzle) and cell accuracy per step and the rule
    check (Sudoku: the answer obeys the rules; mazes: it is a shortest path, any of them), and for ARC pass@1
    and pass@2 after voting across augmentations (arc_pass_at_k); for control, per step, the rollout metrics
    of control.metrics over the first eval_iters * batch_size rows of the split."""
    was_training = m.training
    m.eval()
    gen = torch.Generator().manual_seed(seed + 1 + rank)  # the same batches at every eval
    out = {}
    for split in splits:
        if task == 'lm':
            batches = [random_ix(split, gen, batch_size) for _ in range(eval_iters)]
        elif task == 'puzzle':  # fixed rows, spread over the ranks, no augmentation
            batches = [(torch.arange(batch_size) + (i * world_size + rank) * batch_size) % split_len[split]
                       for i in range(eval_iters)]
        else:  # control: each row once, the same rows on every rank (percentiles need all of them together)
            batches = torch.arange(min(split_len[split], eval_iters * batch_size)).split(batch_size)
        sums = torch.zeros(5, S, device=device)  # loss, ACT acc, exact, cell, rule-valid
        halt_sum = torch.zeros((), device=device)
        halt_hist = torch.zeros(S, device=device)  # rows halting at each step
        rows, preds = [], [[] for _ in range(S)]  # control: inputs, targets and each step's predictions
        for ix in batches:
            X, Y, P = get_batch(split, ix)
            y = z = None
            halt_step = torch.full((len(X),), S, device=device)
            for s in range(S):
                with ctx:
                    logits, q, y, z = m(X, y, z, puzzle_ids=P)
                    loss, _, acc = step_losses(logits, q, X, Y)
                sums[0, s] += loss  # summed on the device: one sync per eval, not per batch
                if acc is not None:
                    sums[1, s] += acc
                if task == 'puzzle':
                    pred, mask = logits.argmax(-1), Y != -100
                    right = (pred == Y) & mask
                    sums[2, s] += (right.sum(1) == mask.sum(1)).float().mean()
                    sums[3, s] += right.sum() / mask.sum()
                    sums[4, s] += rule_valid(X, pred)
                if task == 'control':
                    preds[s].append(logits.float())
                if task != 'lm' and q is not None:
                    halt_step = torch.where((q > 0) & (halt_step == S), s + 1, halt_step)
            halt_sum += halt_step.float().mean()
            halt_hist += torch.bincount(halt_step - 1, minlength=S)
            if task == 'control':
                rows.append((X, Y))
        if ddp:  # every rank evaluates its own batches; all of them get the same means
            dist.all_reduce(sums)
            dist.all_reduce(halt_sum)
            dist.all_reduce(halt_hist)
        sums = (sums / (len(batches) * world_size)).tolist()
        if task == 'control':
            X, Y = (torch.cat(t) for t in zip(*rows))
            x0, target = control.split_features(meta, X)
        for s in range(S):
            out[f'{split}_loss_s{s + 1}'] = sums[0][s]
            if raw_model.q_head is not None:
                out[f'{split}_act_acc_s{s + 1}'] = sums[1][s]
            if task == 'puzzle':
                out[f'{split}_exact_s{s + 1}'], out[f'{split}_cell_s{s + 1}'] = sums[2][s], sums[3][s]
                if meta['augmentation'] in ('sudoku', 'maze'):
                    out[f'{split}_valid_s{s + 1}'] = sums[4][s]
            if task == 'control':
                cm = control.metrics(meta, x0, target, torch.cat(preds[s]), Y)
                for k in ('control_mse', 'final_err', 'cost_ratio', 'cost_ratio_p95', 'success'):
                    out[f'{split}_{k}_s{s + 1}'] = cm[k]
                out[f'{split}_opt_success'] = cm['opt_success']  # what the optimal controls reach: the ceiling
        if task != 'lm' and raw_model.q_head is not None:
            out[f'{split}_halt_step'] = halt_sum.item() / (len(batches) * world_size)
            out[f'{split}_halt_hist'] = (halt_hist / halt_hist.sum()).tolist()  # for plot.py's histogram
    if task == 'puzzle' and meta['augmentation'] == 'arc':
        out.update(arc_pass_at_k(m))
    m.train(was_training)
    if fsdp:  # an FSDP root keeps its weights gathered after a forward; shard them again
        m.reshard()
    return out


@torch.no_grad()
def arc_pass_at_k(m):
    """ARC's score at every supervision step: each test pair is solved under arc_eval_votes augmentations,
    each answer mapped back by the inverse augmentation, cropped at EOS and voted on (puzzles.arc_pair_hits);
    pass@k: the right grid is among the k most voted. Pairs are spread over the ranks, which all run the
    same number of batches (FSDP runs forwards in lockstep); the hits are summed over the ranks."""
    data, K = pdata['test'], arc_eval_votes
    n = min(arc_eval_pairs or split_len['test'], split_len['test'])
    slots = np.arange(rank, -(-n // world_size) * world_size, world_size)  # this rank's pairs, padded
    rows = slots % n
    ix, aug_ids = np.repeat(rows, K), np.tile(puzzles.arc_vote_ids(K, n_aug), len(rows))
    preds = [[] for _ in range(S)]
    for b in range(0, len(ix), batch_size):
        batch = puzzles.get_batch(data, ix[b:b + batch_size], None, aug_ids=aug_ids[b:b + batch_size], n_aug=n_aug)
        X, P = (torch.from_numpy(batch[k]).to(device) for k in ('inputs', 'emb_ids'))
        with ctx:
            for s, (logits, _) in enumerate(m.supervision_steps(X, puzzle_ids=P)):
                preds[s].append(logits.argmax(-1).cpu().numpy())
    hits = torch.zeros(S, n, 2, device=device)
    own = np.repeat(slots < n, K)  # padding repeats pairs of other ranks: not counted here
    for s in range(S):
        pairs, h = puzzles.arc_pair_hits(np.concatenate(preds[s])[own], aug_ids[own], ix[own], data['labels'])
        hits[s, torch.from_numpy(pairs)] = torch.from_numpy(h).float().to(device)
    if ddp:
        dist.all_reduce(hits)
    hits = hits.cpu().numpy()
    out = {}
    for s in range(S):
        score = puzzles.arc_score(hits[s], data['puzzle_ids'][:n])
        out.update({f'test_{k}_s{s + 1}': score[k] for k in ('pass@1', 'pass@2', 'task_pass@1', 'task_pass@2')})
    return out


def rule_valid(X, pred):
    """Fraction of answers that satisfy the puzzle's rules (any valid answer counts, not only the label)."""
    X, pred = X.cpu().numpy(), pred.cpu().numpy()
    if meta['augmentation'] == 'sudoku':
        return float(puzzles.sudoku_valid(X, pred).mean())
    if meta['augmentation'] == 'maze':
        return float(np.mean([puzzles.maze_path_ok(x, p) for x, p in zip(X, pred)]))
    return 0.0


def full_state_dict(m):
    """m's weights as plain full tensors (gathered from the ranks under FSDP; on rank 0, on the CPU)."""
    return get_model_state_dict(m, options=StateDictOptions(full_state_dict=True, cpu_offload=fsdp))


def save_checkpoint(path=ckpt_path):
    """Called on every rank (FSDP gathers collectively); rank 0 writes. True if a checkpoint was written."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=fsdp)
    model_sd = full_state_dict(raw_model)
    optim_sd = get_optimizer_state_dict(raw_model, optimizer, options=options)
    ema_sd = {'model': full_state_dict(ema.model), 'step': ema.step, 'decay': ema.decay} if ema is not None else None
    if not master:
        return False
    if path == ckpt_path and not all(torch.isfinite(t).all() for t in model_sd.values() if t.is_floating_point()):
        print(f"not saving {ckpt_path}: the weights are not finite (the previous checkpoint stays)")
        return False
    ckpt = {
        'model': model_sd, 'ema': ema_sd, 'optimizer': optim_sd, 'model_args': model_args, 'config': config,
        'iter_num': iter_num, 'best_val_loss': best_val_loss, 'wandb_run_id': wandb_run_id,
        'system': meta if task == 'control' else None,  # control: what sample.py needs to roll predictions out
        'rng': {'torch': torch.get_rng_state(), 'data': train_gen.get_state(),
                'cuda': torch.cuda.get_rng_state_all() if device_type == 'cuda' else []},
    }
    tmp = path + '.tmp'
    torch.save(ckpt, tmp)
    os.replace(tmp, path)  # atomic: a crash leaves the previous checkpoint intact
    return True


def link_best():
    # best.pt shares ckpt.pt's file: the next os.replace of ckpt.pt leaves it in place
    best, tmp = os.path.join(out_dir, 'best.pt'), os.path.join(out_dir, 'best.pt.tmp')
    if os.path.exists(tmp):
        os.remove(tmp)
    try:
        os.link(ckpt_path, tmp)
    except OSError:  # a filesystem without hard links: copy
        shutil.copyfile(ckpt_path, tmp)
    os.replace(tmp, best)


def log_metrics(row):
    if not master:
        return
    with open(os.path.join(out_dir, 'metrics.jsonl'), 'a') as f:
        f.write(json.dumps(row) + '\n')
    if wandb_log:
        wandb.log(row, step=row['iter'])


def rss_mb():
    """This process's resident memory in MiB (Linux: current; elsewhere: the peak)."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
    except OSError:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2 ** 20 if sys.platform == 'darwin' else 2 ** 10)


def get_lr(it, elapsed=0.0):
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if max_seconds:  # a time budget: the cosine spans it (how many iters fit is not known in advance)
        ratio = min(elapsed / max_seconds, 1.0)
    elif it > lr_decay_iters:
        return min_lr
    else:
        ratio = (it - warmup_iters) / max(lr_decay_iters - warmup_iters, 1)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)


if wandb_log and master:
    import wandb
    run = wandb.init(project=wandb_project, name=wandb_run_name, config=config, id=wandb_run_id, resume='allow')
    wandb_run_id = run.id

# -----------------------------------------------------------------------------
stop_signal = None


def on_signal(signum, frame):
    # preemption or Ctrl-C: finish the current step, checkpoint, exit 0; a second one stops at once
    global stop_signal
    if stop_signal is not None:
        raise KeyboardInterrupt
    stop_signal = signum
    print(f"{signal.Signals(signum).name}: finishing this step, then saving a checkpoint")


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)

start_iter = iter_num
nonfinite_run, nonfinite_total = 0, 0
loss_acc, n_acc = 0, 0  # summed on the device: no sync per step
t_start = t_log = time.time()
while True:
    elapsed = 0.0
    if max_seconds:  # rank 0's clock: every rank takes the same lr and stops at the same iter
        elapsed = torch.tensor(time.time() - t_start, dtype=torch.float64, device=device)
        if ddp:
            dist.broadcast(elapsed, 0)
        elapsed = elapsed.item()
        if elapsed >= max_seconds:
            max_iters = min(max_iters, iter_num)  # spent: evaluate, checkpoint and stop now
    lr = get_lr(iter_num, elapsed) if decay_lr else learning_rate
    for group in optimizer.param_groups:
        group['lr'] = lr * group.get('lr_scale', 1.0)

    if iter_num % eval_interval == 0 or iter_num == max_iters or eval_only:
        metrics = evaluate(ema.model if ema is not None else raw_model)
        val = splits[1]
        val_loss = metrics[f'{val}_loss_s{S}']
        steps = ' | '.join(f"s{s + 1} {metrics[f'{val}_loss_s{s + 1}']:.4f}" for s in range(S))
        act_info = f", ACT acc {metrics[f'{val}_act_acc_s{S}']:.3f}" if f'{val}_act_acc_s{S}' in metrics else ''
        if master:
            print(f"eval {iter_num}: train {metrics[f'train_loss_s{S}']:.4f}, {val} {val_loss:.4f} "
                  f"(per supervision step: {steps}){act_info}")
            if task == 'puzzle':
                exact = ' '.join(f"{metrics[f'test_exact_s{s + 1}']:.3f}" for s in range(S))
                print(f"  test exact accuracy per step: {exact}; cell {metrics[f'test_cell_s{S}']:.3f}"
                      + (f", rules {metrics[f'test_valid_s{S}']:.3f}" if f'test_valid_s{S}' in metrics else '')
                      + (f", halting step {metrics['test_halt_step']:.2f}" if 'test_halt_step' in metrics else ''))
                if f'test_pass@1_s{S}' in metrics:
                    p1 = ' '.join(f"{metrics[f'test_pass@1_s{s + 1}']:.3f}" for s in range(S))
                    print(f"  test ARC pass@1 per step: {p1}; pass@2 {metrics[f'test_pass@2_s{S}']:.3f}, "
                          f"per task pass@1 {metrics[f'test_task_pass@1_s{S}']:.3f} / pass@2 "
                          f"{metrics[f'test_task_pass@2_s{S}']:.3f} ({arc_eval_votes} votes per pair)")
            if task == 'control':
                per_step = lambda k, f: ' '.join(f"{metrics[f'{val}_{k}_s{s + 1}']:{f}}" for s in range(S))
                print(f"  {val} cost ratio per step: {per_step('cost_ratio', '.4f')}; p95 {per_step('cost_ratio_p95', '.3f')}; "
                      f"success {per_step('success', '.3f')} (optimum {metrics[f'{val}_opt_success']:.3f})"
                      + (f", halting step {metrics[f'{val}_halt_step']:.2f}" if f'{val}_halt_step' in metrics else ''))
        log_metrics({'iter': iter_num, 'kind': 'eval', 'time': time.time() - t_start, 'lr': lr, **metrics})
        improved = val_loss < best_val_loss
        best_val_loss = min(best_val_loss, val_loss)
        if iter_num > start_iter and not eval_only and (improved or always_save_checkpoint):
            if save_checkpoint() and improved:
                link_best()
        t_log = time.time()  # eval time is not training time
    if iter_num >= max_iters or eval_only:
        break

    iter_loss = torch.zeros(S if schedule == 'batch' else 1, device=device)
    # every rank draws the whole job's batch and takes its slice: the data order is the same for any world size
    ix = random_ix('train', train_gen, world_size * gradient_accumulation_steps, batch_size)
    aug_seed = int(torch.randint(2 ** 62, (), generator=train_gen)) if task == 'puzzle' else None
    for micro_step in range(gradient_accumulation_steps):
        g = rank * gradient_accumulation_steps + micro_step  # this micro-batch's place in the job's batch
        X, Y, P = get_batch('train', ix[g], None if aug_seed is None else aug_seed + g)
        if schedule == 'trm':
            iter_loss += train_trm_step(X, Y, P).float()
        else:
            iter_loss += train_batch(X, Y, P, micro_step == gradient_accumulation_steps - 1).float()
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), grad_clip if grad_clip > 0 else float('inf'))
    if isinstance(grad_norm, DTensor):  # FSDP: the norm over all shards
        grad_norm = grad_norm.full_tensor()
    # fp16's scaler skips overflowing steps itself; otherwise a non-finite gradient skips the step here
    finite = (torch.isfinite(iter_loss).all() & (torch.isfinite(grad_norm) | scaler.is_enabled())).float()
    if ddp:  # losses are per rank: all ranks must take or skip the step together
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    if finite:
        scaler.step(optimizer)
        if ema is not None:
            ema.update(raw_model)
        nonfinite_run = 0
    else:
        nonfinite_run, nonfinite_total = nonfinite_run + 1, nonfinite_total + 1
        print(f"iter {iter_num}: non-finite loss or gradients, step skipped ({nonfinite_run} in a row)")
        if nonfinite_run >= max_nonfinite_steps:
            diag = os.path.join(out_dir, 'nonfinite.pt')
            save_checkpoint(diag)
            sys.exit(f"error: {nonfinite_run} non-finite steps in a row at iter {iter_num}; state saved to {diag}, "
                     f"{ckpt_path} left as it was; lower learning_rate or raise grad_clip, then resume")
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    loss_acc += iter_loss
    n_acc += gradient_accumulation_steps
    iter_num += 1

    if iter_num % log_interval == 0 and master:
        dt = time.time() - t_log
        losses = (loss_acc / n_acc).cpu()
        tok_s = tokens_per_iter * n_acc / gradient_accumulation_steps / dt
        # puzzles: samples x supervision steps per second (trm: one step per iter), the TRM code's throughput unit
        sps = tok_s / block_size * (S if schedule == 'batch' else 1) if task == 'puzzle' else None
        steps = ' '.join(f'{l:.3f}' for l in losses.tolist())
        print(f"iter {iter_num}: loss {losses[-1]:.4f} (steps {steps}), lr {lr:.2e}, "
              f"{1000 * dt * gradient_accumulation_steps / n_acc:.1f} ms/iter, {tok_s:,.0f} tok/s"
              + (f", {sps:.2f} samples*steps/s" if sps is not None else ''))
        names = [f'loss_s{s + 1}' for s in range(S)] if schedule == 'batch' else ['loss']  # trm: one step per iter
        log_metrics({'iter': iter_num, 'kind': 'train', 'time': time.time() - t_start, 'lr': lr, 'tok_per_s': tok_s,
                     **({'samples_steps_per_s': sps} if sps is not None else {}),
                     'nonfinite_steps': nonfinite_total, 'rss_mb': rss_mb(), **dict(zip(names, losses.tolist()))})
        loss_acc, n_acc, t_log = 0, 0, time.time()
    stop = stop_signal is not None
    if ddp:  # one rank's signal stops all of them at the same step
        flag = torch.tensor(float(stop), device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        stop = bool(flag.item())
    if stop:
        if save_checkpoint():
            print(f"stopped at iter {iter_num}: {ckpt_path} saved; continue with --init_from=resume")
        break

if ddp:  # free DDP's reducer and FSDP's sharded state (they hold gloo work) while the interpreter is alive: at exit
    del model, raw_model, optimizer, ema  # their teardown can abort the process
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()
