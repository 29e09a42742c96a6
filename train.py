"""
Train a recursive GPT (TRM-style) with deep supervision.

    python train.py                                   # small recursive char model, ~5 min on a 2-core CPU
    python train.py config/shakespeare_char_plain.py  # the recursion-off baseline
    python train.py --n_sup=4 --T_recursion=2         # any default below can be overridden
    python train.py config/control.py                 # control: double integrator, optimal controls by LQR

Every key of config/defaults.py is a config key (see configurator.py). The data folder decides the task (common.task_of):
a task module (lm.py, puzzles.py, control.py) makes its batches, losses and metrics; everything else here is
the same for every task. Two schedules:
  batch  each batch runs n_sup supervision steps, each with its own loss and backward (memory holds one
         step's graph), then one optimizer step
  trm    one supervision step and one optimizer step per batch; (y, z) carry over to the next batch, and
         the rows that halted are replaced by fresh ones (the TRM paper's)
"""
import difflib
import gc
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import fields
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel as DDP

import checkpoint
from common import (check_memory, duration, gpt_args, or_exit, prepare_command, rss_mb, runtime, supervision_weights,
                    task_module, task_of)
from configurator import DEFAULTS_FILE, TRAIN_RULES, from_command_line, train_defaults
from ema import EMA
from evaluate import eval_steps, evaluate
from grokfast import GrokFast
from model import GPT, Block, GPTConfig, HaltedKV, halted

# -----------------------------------------------------------------------------
# config: every key and its default is in config/defaults.py; config files and --key=value override them
config = from_command_line(train_defaults(), DEFAULTS_FILE, rules=TRAIN_RULES)  # what is logged and checkpointed
globals().update(config)

# processes: torchrun sets RANK, LOCAL_RANK, WORLD_SIZE; NCCL on GPUs, gloo on CPU
ddp = 'RANK' in os.environ
rank = int(os.environ.get('RANK', 0))
local_rank = int(os.environ.get('LOCAL_RANK', 0))
world_size = int(os.environ.get('WORLD_SIZE', 1))
master = rank == 0  # logs, writes metrics and checkpoints
# gradient_accumulation_steps counts the micro-batches of the whole job; each process takes its share,
# rounded up so that any config runs under any number of processes (the effective batch is then larger)
accumulation = -(-gradient_accumulation_steps // world_size)
if master and accumulation * world_size != gradient_accumulation_steps:
    print(f"note: gradient_accumulation_steps={gradient_accumulation_steps} over {world_size} processes is "
          f"{accumulation} each: every step takes {accumulation * world_size} micro-batches, not "
          f"{gradient_accumulation_steps}")
gradient_accumulation_steps = accumulation  # per process
device, device_type, dtype, ctx = or_exit(runtime, device, dtype, local_rank)
if ddp and device_type == 'cuda':
    torch.cuda.set_device(device)
if fsdp and not ddp:
    sys.exit("error: fsdp=True shards over torchrun's processes; launch with torchrun, or drop --fsdp=True")
if fsdp and eval_iters == 0:
    sys.exit("error: eval_iters=0 (the whole split) gives the ranks different numbers of batches, and FSDP runs "
             "forwards in lockstep: set eval_iters >= 1, or evaluate the checkpoint with eval.py")

# data: data/<dataset> decides the task, and its module reads the data and fixes what the data fixes in
# the model (vocabulary, lengths, widths). Everything is checked before anything is allocated or written.
data_dir = os.path.join('data', dataset)
if not os.path.isdir(data_dir):
    sys.exit(f"error: {data_dir} does not exist; prepare it first: {prepare_command(dataset)}")
task_name = task_of(data_dir)
task = task_module(task_name)
data = or_exit(task.load, data_dir, config)
model_args = gpt_args(config, task, data)
block_size = model_args['block_size']
schedule = schedule or task.SCHEDULES[0]
if schedule == 'trm' and not recursion:  # a plain model has one step and no (y, z) to carry: the schedules coincide
    schedule = 'batch'
if schedule not in task.SCHEDULES:
    sys.exit(f"error: schedule={schedule!r} halts whole sequences (puzzles, control); {data_dir} holds a "
             f"{task_name} task: use schedule={task.SCHEDULES[0]!r}")
if halt_train and not (model_args['causal'] and recursion and act and schedule == 'batch'):
    sys.exit("error: halt_train=True halts tokens of a causal model with a q-head under the batch schedule; set "
             "recursion=True, act=True (a language model), or drop --halt_train=True")
if random_n_sup and not (recursion and n_sup > 1 and schedule == 'batch'):
    sys.exit("error: random_n_sup=True draws the supervision steps of each batch around n_sup: set recursion=True, "
             "n_sup >= 2 and schedule='batch', or drop --random_n_sup=True")
if schedule == 'trm' and gradient_accumulation_steps != 1:
    sys.exit("error: schedule='trm' steps the optimizer after every supervision step of one micro-batch per "
             "process: set gradient_accumulation_steps to the number of processes")
with torch.device('meta'):  # the architecture's checks, and its size, before any memory is taken
    sized = or_exit(lambda: GPT(GPTConfig(**model_args)))
or_exit(check_memory, sized, batch_size, dtype, use_ema, device, device_type, halt_train, grokfast_lamb > 0)

# out_dir: a fresh run never replaces a run that is there, unless told to
ckpt_path = os.path.join(out_dir, 'ckpt.pt')
held = [f for f in ('ckpt.pt', 'best.pt', 'metrics.jsonl') if os.path.exists(os.path.join(out_dir, f))]
if init_from == 'resume' and 'ckpt.pt' not in held:
    sys.exit(f"error: init_from='resume' but {ckpt_path} does not exist; train with init_from='scratch' first")
if init_from != 'resume' and held and not overwrite:
    sys.exit(f"error: {out_dir} holds a run ({', '.join(held)}); continue it with --init_from=resume, train into "
             f"another --out_dir, or replace it with --overwrite=True")
if master:
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        sys.exit(f"error: cannot create out_dir={out_dir!r} ({e.strerror}); pick another --out_dir")
    if init_from != 'resume':  # --overwrite=True: the old run goes now, so no file of it mixes with the new one
        for f in ('ckpt.pt', 'best.pt', 'metrics.jsonl', 'nonfinite.pt'):
            if os.path.exists(os.path.join(out_dir, f)):
                os.remove(os.path.join(out_dir, f))
if ddp:
    dist.init_process_group(backend='nccl' if device_type == 'cuda' else 'gloo')
torch.manual_seed(seed)  # the same initial weights on every rank (FSDP shards them as they are)
scaler = torch.amp.GradScaler(device_type, enabled=(dtype == 'float16'))
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True


def to_device(batch):
    """A (inputs, targets, puzzle ids or None) batch from the task, on the device."""
    if device_type == 'cuda':
        return tuple(t.pin_memory().to(device, non_blocking=True) if t is not None else None for t in batch)
    return tuple(t.to(device) if t is not None else None for t in batch)


def all_reduce(t):
    """Sum t over the processes, in place (nothing to do in one process)."""
    if ddp:
        dist.all_reduce(t)


# model, optimizer, EMA: from scratch or from out_dir/ckpt.pt
iter_num = 0
best_val_loss = float('inf')
wandb_run_id = None
ckpt = None
if init_from == 'resume':
    ckpt = or_exit(checkpoint.read, ckpt_path, device)
    saved = {**{f.name: f.default for f in fields(GPTConfig)}, **ckpt['model_args']}  # keys added since: defaults
    differ = {k: (saved[k], v) for k, v in model_args.items() if saved[k] != v}
    if differ:
        sys.exit("error: the config does not match the checkpoint's architecture: " +
                 ", ".join(f"{k}={new!r} (checkpoint: {old!r})" for k, (old, new) in differ.items()))
    iter_num = ckpt['iter_num']
    best_val_loss = ckpt['best_val_loss']
    wandb_run_id = ckpt.get('wandb_run_id')
    if iter_num >= max_iters and not eval_only:
        sys.exit(f"error: {ckpt_path} is at iter {iter_num} and max_iters={max_iters}: nothing to train; raise "
                 f"--max_iters (and --lr_decay_iters), or evaluate it with --eval_only=True")
model = GPT(GPTConfig(**model_args))
if init_from.startswith('trm:'):  # evaluate or fine-tune an official TRM checkpoint
    try:
        official = torch.load(init_from[4:], map_location='cpu', weights_only=True)
        model.load_state_dict(checkpoint.from_official_trm(official, model))
    except (OSError, RuntimeError, ValueError) as e:
        sys.exit(f"error: {init_from[4:]}: {str(e).splitlines()[0][:300]} (set trm_faithful=True, separate_nets=False, "
                 f"memory_slots=0 and the official run's sizes: n_embd, n_layer, n_head, mixer, puzzle_emb_ndim, "
                 f"puzzle_emb_len)")
ema = EMA(model, ema_decay) if use_ema else None
grokfast = GrokFast(grokfast_alpha, grokfast_lamb) if grokfast_lamb > 0 else None
if ckpt is not None:  # checkpoints hold full (unsharded) tensors: load them before sharding
    model.load_state_dict(ckpt['model'])
    if ema is not None:
        ema.load_state_dict(ckpt['ema'])
for m in [model] + ([ema.model] if ema is not None else []):
    if fsdp:  # each block, of either stack, is one all-gather; the root holds the embeddings and heads
        for block in [b for b in m.modules() if isinstance(b, Block)]:
            fully_shard(block)
        fully_shard(m)
    m.to(device)
optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), device_type, puzzle_emb_lr,
                                       puzzle_emb_weight_decay)
torch.manual_seed(seed + rank)  # dropout differs per rank; the data order does not (see the loop)
train_gen = torch.Generator().manual_seed(seed)  # data order: its state is the data position
if ckpt is not None:
    # optimizer state is saved keyed by parameter name and unsharded, so it loads with or without FSDP
    set_optimizer_state_dict(model, optimizer, ckpt['optimizer'], options=StateDictOptions(full_state_dict=True))
    if grokfast is not None and ckpt.get('grokfast'):  # a run that had it off starts the filter afresh
        grokfast.load_state_dict(ckpt['grokfast'], model)
    torch.set_rng_state(ckpt['rng']['torch'].cpu())
    train_gen.set_state(ckpt['rng']['data'].cpu())
    if device_type == 'cuda' and ckpt['rng'].get('cuda'):
        torch.cuda.set_rng_state_all([s.cpu() for s in ckpt['rng']['cuda']])
    ckpt = None  # free memory
raw_model = model
if compile:
    model = torch.compile(model)
if ddp and not fsdp:
    # the conditioning (yz_init_from) gets a gradient only in a step that starts some row from its init
    model = DDP(model, device_ids=[local_rank] if device_type == 'cuda' else None,
                find_unused_parameters=raw_model.cond is not None)

S = raw_model.n_sup
S_train = 2 * S - 1 if random_n_sup else S  # the most supervision steps a batch runs
S_eval = eval_steps(raw_model, config)  # evals may run more steps than training (test-time scaling)
sup_weights = {k: supervision_weights(supervision_weight_base, k) for k in range(1, S_train + 1)}  # for k steps
run = SimpleNamespace(device=device, ctx=ctx, rank=rank, world_size=world_size, all_reduce=all_reduce,
                      to_device=to_device)  # what evaluate needs of this process
tokens_per_iter = gradient_accumulation_steps * world_size * batch_size * block_size
if master:
    print(f"device {device}, dtype {dtype}, {raw_model.get_num_params() / 1e6:.2f}M non-embedding params, "
          f"{raw_model.flops_per_token() / 1e6:.1f} MFLOPs/token (training), {tokens_per_iter:,} tokens/iter"
          f" ({world_size} x {gradient_accumulation_steps} micro-batches of {batch_size} x {block_size})")


# -----------------------------------------------------------------------------
def step_objective(s, k, loss, bce, prev):
    """What supervision step s of k adds to the batch schedule's objective: weighted loss, ACT and improvement terms."""
    total = sup_weights[k][s] * loss
    if bce is not None:
        total = total + act_loss_weight * sup_weights[k][s] * bce
    if prev is not None and improvement_reward_scale > 0:
        total = total + improvement_reward_scale / (k - 1) * F.relu(loss - prev)
    return total


def steps_of(it):
    """The supervision steps the batches of iteration `it` run: n_sup, or with random_n_sup a draw uniform in
    1..2*n_sup-1 (mean n_sup: the same compute on average), a function of seed and iteration, so that every
    rank draws the same and a resumed run the same as a straight one."""
    return 1 + random.Random(seed * 1_000_003 + it).randrange(S_train) if random_n_sup else S


def halts(q, steps):
    """Training's halting: the q-head says "right" (model.halted) and the row or token has taken its
    minimum number of steps; it explores (with halt_exploration_prob) by drawing a minimum of 2..n_sup (TRM)."""
    explore = torch.rand(q.shape, device=q.device) < halt_exploration_prob
    min_steps = torch.randint(2, S + 1, q.shape, device=q.device) * explore
    return halted(q.detach()) & (steps >= min_steps)


def train_batch(X, Y, P, k, last_micro_step=True):
    """The batch schedule: k supervision steps on one micro-batch, each with its own backward.
    halt_train: under per-token halting (model.halted), so that tokens see at training what they see at
    inference: a token whose q-head said "halt" shows later steps its keys/values of that step (its own
    loss still counts at every step). Returns the step losses."""
    y = z = None  # the model starts from its y/z inits
    prev = None
    sites = running = None  # halt_train: this step's attention sites, the tokens that have not halted
    step_losses = []
    for s in range(k):
        # DDP all-reduces gradients once per iteration, in the last backward of the last micro-step;
        # FSDP reduce-scatters after every backward, so that no rank ever holds full gradients
        if ddp and not fsdp:
            model.require_backward_grad_sync = last_micro_step and s == k - 1
        if halt_train:
            sites = HaltedKV(running, sites)
        with ctx:
            logits, q, y, z = model(X, y, z, sites, puzzle_ids=P)
            loss, bce, _ = task.losses(logits, q, X, Y, data, config)
            total = step_objective(s, k, loss, bce, prev)
        scaler.scale(total / gradient_accumulation_steps).backward()
        if halt_train:
            stop = halts(q, s + 1)
            running = ~stop if running is None else running & ~stop
        prev = loss.detach()
        step_losses.append(prev)
        if s < k - 1:
            X = task.next_input(X, logits, data, config)
    return torch.stack(step_losses)


carry = None  # the trm schedule's rows in flight: their data, (y, z), steps taken, halted or not


def refill_carry(carry, fresh):
    """The rows in flight for the next supervision step: rows that halted are replaced by the rows of
    `fresh` (a dict: X, Y, P) and restart (the model starts them from its initial state) with 0 steps; the
    others keep their data, (y, z) and step count. carry None: every row is fresh."""
    n = len(fresh['X'])
    if carry is None:
        return dict(fresh, y=None, z=None, restart=None, steps=torch.zeros(n, dtype=torch.long, device=device))
    h = carry['halted']
    keep = lambda new, old: torch.where(h.view(-1, *[1] * (new.dim() - 1)), new, old)
    out = {k: keep(v, carry[k]) for k, v in fresh.items() if v is not None}
    return dict(out, y=carry['y'], z=carry['z'], restart=h, steps=torch.where(h, 0, carry['steps']))


def train_trm_step(X, Y, P):
    """The trm schedule: one supervision step on the rows in flight, after the halted ones were replaced
    by rows of this fresh batch. Returns the step's loss; the caller steps the optimizer."""
    global carry
    c = refill_carry(carry, {'X': X, 'Y': Y, 'P': P})
    steps = c['steps'] + 1
    with ctx:
        logits, q, y, z = model(c['X'], c['y'], c['z'], puzzle_ids=c.get('P'), restart=c['restart'])
        loss, bce, _ = task.losses(logits, q, c['X'], c['Y'], data, config)
        total = loss + act_loss_weight * bce if bce is not None else loss
    scaler.scale(total).backward()
    done = steps >= S  # n_sup steps taken, or halts() (with one step every row is done)
    if q is not None and S > 1:
        done |= halts(q, steps)
    carry = dict(c, X=task.next_input(c['X'], logits, data, config), y=y, z=z, steps=steps, halted=done)
    return loss.detach()[None]


def save_checkpoint(path=ckpt_path):
    """Called on every rank (FSDP gathers collectively); rank 0 writes. True if a checkpoint was written."""
    state = checkpoint.gather(raw_model, optimizer, ema, fsdp, grokfast)
    if not master:
        return False
    ckpt = {
        **state, 'model_args': model_args, 'config': config, 'task': task_name,
        'iter_num': iter_num, 'best_val_loss': best_val_loss, 'wandb_run_id': wandb_run_id,
        'system': data['system'],  # control: what solve.py needs to roll predictions out
        'meta': data.get('meta'),  # the data's meta: a language model's vocabulary travels with it
        'rng': {'torch': torch.get_rng_state(), 'data': train_gen.get_state(),
                'cuda': torch.cuda.get_rng_state_all() if device_type == 'cuda' else []},
    }
    return or_exit(checkpoint.save, ckpt, path, check_finite=path == ckpt_path)


def log_metrics(row):
    if not master:
        return
    try:
        with open(os.path.join(out_dir, 'metrics.jsonl'), 'a') as f:
            f.write(json.dumps(row) + '\n')
    except OSError as e:
        sys.exit(f"error: could not append to {out_dir}/metrics.jsonl ({e.strerror}); {ckpt_path} holds the "
                 f"last checkpoint")
    if wandb_log:
        wandb.log(row, step=row['iter'])


def progress():
    """'elapsed 4m12s, ETA 4m05s': the ETA from the pace so far (evals included), or the time budget's rest."""
    elapsed = time.time() - t_start
    left = elapsed / (iter_num - start_iter) * (max_iters - iter_num) if iter_num > start_iter else float('inf')
    if max_seconds:
        left = min(left, max(max_seconds - elapsed, 0))
    return f"elapsed {duration(elapsed)}" + (f", ETA {duration(left)}" if math.isfinite(left) else '')


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


# early stopping: a metric like a loss (by its name, or early_stop_mode) stops at <= the target, others at >=
stop_mode = early_stop_mode or ('min' if any(w in early_stop_metric for w in ('loss', 'cost', 'err', 'mse')) else 'max')


def target_reached(metrics):
    """Whether an eval's early_stop_metric meets early_stop_value. The names are known at the run's first eval,
    which checks it before anything is logged or saved: an unknown one exits with one line. Rank 0 decides for
    every rank (a task's whole-split metrics, control's rollouts, are computed per rank: the last bit may differ)."""
    names = [k for k, v in metrics.items() if not isinstance(v, (list, str))]
    if early_stop_metric not in names:
        near = difflib.get_close_matches(early_stop_metric, names, n=4, cutoff=0.5) or names[:4]
        sys.exit(f"error: early_stop_metric={early_stop_metric!r} is not a metric this run's evals log (close: "
                 f"{', '.join(near)}; see the eval rows of metrics.jsonl)" if master else 1)
    value = metrics[early_stop_metric]
    reached = torch.tensor(float(value <= early_stop_value if stop_mode == 'min' else value >= early_stop_value),
                           device=device)
    if ddp:
        dist.broadcast(reached, 0)
    return bool(reached.item())


if wandb_log and master:
    import wandb
    wandb_run_id = wandb.init(project=wandb_project, name=wandb_run_name, config=config, id=wandb_run_id,
                              resume='allow').id

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
nonfinite_run = 0
nonfinite_total = 0
loss_acc = 0  # summed on the device: no sync per step
n_acc = 0
step_runs = torch.zeros(S_train if schedule == 'batch' else 1)  # micro-batches that ran each supervision step
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

    # with a target, a resumed run evaluates at once: one stopped early stops again, and the name is checked
    first_eval = early_stop_metric and iter_num == start_iter
    if iter_num % eval_interval == 0 or iter_num == max_iters or eval_only or first_eval:
        metrics = evaluate(ema.model if ema is not None else raw_model, task, data, config, run)
        reached = bool(early_stop_metric) and not eval_only and target_reached(metrics)
        val = task.SPLITS[1]  # picks best.pt: the loss of training's last step
        val_loss = metrics[f'{val}_loss_s{S}']
        if master:
            steps = ' | '.join(f"s{s + 1} {metrics[f'{val}_loss_s{s + 1}']:.4f}" for s in range(S_eval))
            act_info = f", ACT acc {metrics[f'{val}_act_acc_s{S}']:.3f}" if f'{val}_act_acc_s{S}' in metrics else ''
            print(f"eval {iter_num}/{max_iters}: train {metrics[f'train_loss_s{S}']:.4f}, {val} {val_loss:.4f} "
                  f"(per supervision step: {steps}){act_info}")
            summary = task.summary(metrics, val, S_eval, config)
            if summary:
                print(summary)
        log_metrics({'iter': iter_num, 'kind': 'eval', 'time': time.time() - t_start, 'lr': lr, **metrics})
        improved = val_loss < best_val_loss
        best_val_loss = min(best_val_loss, val_loss)
        saved = False
        if iter_num > start_iter and not eval_only and (improved or always_save_checkpoint or reached):
            saved = save_checkpoint()
            if saved and improved:
                checkpoint.link_best(out_dir)
        t_log = time.time()  # eval time is not training time
        if reached:
            value = metrics[early_stop_metric]
            log_metrics({'iter': iter_num, 'kind': 'early_stop', 'time': time.time() - t_start,
                         'metric': early_stop_metric, 'value': value, 'target': early_stop_value, 'mode': stop_mode})
            if master:
                print(f"early stop at iter {iter_num}: {early_stop_metric} {value:.4g} "
                      f"{'<=' if stop_mode == 'min' else '>='} {early_stop_value:g}, the target; "
                      + (f"{ckpt_path} saved" if saved else f"{ckpt_path} not written" if iter_num > start_iter else
                         "nothing trained (to train past it, change early_stop_value or early_stop_metric)"))
            break
    if iter_num >= max_iters or eval_only:
        break

    if compile and iter_num == start_iter and master:
        print("compiling the training step (the first iteration takes a while; later runs use the cache)...")
    k = steps_of(iter_num)
    iter_loss = torch.zeros(S_train if schedule == 'batch' else 1, device=device)
    # every rank draws the whole job's batch and takes its slice: the data order is the same for any world size
    ix, aug_seed = task.draw(data, train_gen, (world_size * gradient_accumulation_steps, batch_size))
    for micro_step in range(gradient_accumulation_steps):
        g = rank * gradient_accumulation_steps + micro_step  # this micro-batch's place in the job's batch
        X, Y, P = to_device(task.get_batch(data, 'train', ix[g], None if aug_seed is None else aug_seed + g))
        if schedule == 'trm':
            iter_loss += train_trm_step(X, Y, P).float()
        else:
            iter_loss[:k] += train_batch(X, Y, P, k, micro_step == gradient_accumulation_steps - 1).float()
    scaler.unscale_(optimizer)
    if grokfast is not None:  # once per optimizer step, on the accumulated (and under DDP averaged) gradients;
        grokfast.step(raw_model)  # before clipping, which then bounds the step taken (the paper's code does not clip)
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
        nonfinite_run += 1
        nonfinite_total += 1
        print(f"iter {iter_num}: non-finite loss or gradients, step skipped ({nonfinite_run} in a row)")
        if nonfinite_run >= max_nonfinite_steps:
            diag = os.path.join(out_dir, 'nonfinite.pt')
            save_checkpoint(diag)
            sys.exit(f"error: {nonfinite_run} non-finite steps in a row at iter {iter_num}; state saved to {diag}, "
                     f"{ckpt_path} left as it was; lower learning_rate or raise grad_clip, then resume")
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    loss_acc += iter_loss
    step_runs[:k] += gradient_accumulation_steps
    n_acc += gradient_accumulation_steps
    iter_num += 1

    if iter_num % log_interval == 0 and master:
        dt = time.time() - t_log
        ran = step_runs > 0  # random_n_sup: the steps some batch ran since the last log
        losses = loss_acc.cpu()[ran] / step_runs[ran]  # each step's mean over the micro-batches that ran it
        tok_s = tokens_per_iter * n_acc / gradient_accumulation_steps / dt
        speed = task.log_speed(tok_s, block_size, S if schedule == 'batch' else 1)
        steps = ' '.join(f'{l:.3f}' for l in losses.tolist())
        print(f"iter {iter_num}/{max_iters}: loss {losses[-1]:.4f} (steps {steps}), lr {lr:.2e}, "
              f"{1000 * dt * gradient_accumulation_steps / n_acc:.1f} ms/iter, {tok_s:,.0f} tok/s"
              + ''.join(f", {k} {v:.2f}" for k, v in speed.items()) + f", {progress()}")
        names = [f'loss_s{s + 1}' for s in range(S_train) if ran[s]] if schedule == 'batch' else ['loss']  # trm: one step per iter
        log_metrics({'iter': iter_num, 'kind': 'train', 'time': time.time() - t_start, 'lr': lr, 'tok_per_s': tok_s,
                     **speed, 'nonfinite_steps': nonfinite_total, 'rss_mb': rss_mb(),
                     **dict(zip(names, losses.tolist()))})
        loss_acc = 0
        n_acc = 0
        step_runs.zero_()
        t_log = time.time()
    stop = stop_signal is not None
    if ddp:  # one rank's signal stops all of them at the same step
        flag = torch.tensor(float(stop), device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        stop = bool(flag.item())
    if stop:
        if save_checkpoint():
            print(f"stopped at iter {iter_num}: {ckpt_path} saved; continue with --init_from=resume")
        break

if master and not eval_only and stop_signal is None:
    best = os.path.join(out_dir, 'best.pt')
    print(f"done: iter {iter_num} in {duration(time.time() - t_start)}, best {task.SPLITS[1]} loss {best_val_loss:.4f}"
          + (f" ({best})" if os.path.exists(best) else '') + f"; checkpoint {ckpt_path}; next: "
          + task.NEXT_COMMAND.format(out_dir=out_dir))
if ddp:  # free DDP's reducer and FSDP's sharded state (they hold gloo work) while the interpreter is alive: at exit
    del model, raw_model, optimizer, ema  # their teardown can abort the process
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()
