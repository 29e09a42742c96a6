"""
Evaluation: every task's metrics at every supervision step and at the step where the q-head halts.

    metrics = evaluate(model, task, data, config, run)   # train.py calls it at every eval_interval

run: where and how to run (device, autocast ctx, rank, world_size, all_reduce). Evals run
config['eval_n_sup'] supervision steps (0: the model's n_sup); more than training's is test-time
scaling: the metrics of the extra steps are logged as `_s{k}` like the others.
"""
from types import SimpleNamespace

import torch

from generate import decode
from model import halted


def eval_steps(model, config):
    """The number of supervision steps evals run: eval_n_sup, or the model's n_sup (1 without recursion)."""
    return (config.get('eval_n_sup') or model.n_sup) if model.config.recursion else 1


@torch.no_grad()
def evaluate(m, task, data, config, run, splits=None):
    """Named metrics of every split at every supervision step, on fixed batches (every row runs all
    steps): `{split}_{name}_s{step}` for the loss, the q-head's accuracy and the task's batch metrics,
    averaged over batches and processes; and what the task scores over a whole split. With a q-head and
    more than one step, the answer where it halts (model.halted at halt_threshold): every metric of it,
    `{split}_{name}_halt`, the mean halting step and its histogram. A q-head per sequence (puzzles, control)
    halts a row at its first step whose q says "halt"; one per token (a language model) halts each token as
    decoding does, teacher-forced (generate.decode over the whole window: later tokens see a halted token's
    keys/values of its step). splits: those to evaluate (None: all of the task's)."""
    was_training = m.training
    m.eval()
    S = eval_steps(m, config)
    run = SimpleNamespace(**vars(run), n_sup=S)  # what the task's eval_split runs
    device, ctx, threshold = run.device, run.ctx, config['halt_threshold']
    gen = torch.Generator().manual_seed(config['seed'] + 1 + run.rank)  # the same batches at every eval
    out = {}
    for split in splits or task.SPLITS:
        batches = task.eval_rows(data, split, gen, config, run.rank, run.world_size)
        sums = {}  # metric -> [S + 1]: the steps, then the halting step's answer; one sync per eval, not per batch
        halt_sum = torch.zeros((), device=device)
        n_rows = torch.zeros((), device=device)  # a whole split ends in a shorter batch: batches weigh their rows
        halt_hist = torch.zeros(S, device=device)  # rows (tokens) halting at each step
        halting = False
        inputs, targets, outputs = [], [], [[] for _ in range(S + 1)]  # what the task's eval_split needs
        for ix in batches:
            X, Y, P = run.to_device(task.get_batch(data, split, ix))
            w = len(X)
            y = z = None
            halt_step = torch.full((len(X),), S, device=device)
            X_s = X  # this step's inputs (control's rollout feedback changes them from step to step)
            for s in range(S):
                with ctx:
                    logits, q, y, z = m(X_s, y, z, puzzle_ids=P)
                    loss, _, acc = task.losses(logits, q, X_s, Y, data, config)
                add(sums, S, s, w, device, {'loss': loss, 'act_acc': acc, **task.batch_metrics(logits, q, X_s, Y, data)})
                kept = task.eval_outputs(logits)
                if kept is not None:
                    outputs[s].append(kept)
                X_s = task.next_input(X_s, logits, data, config)
                if q is not None and q.dim() == 1:  # per sequence: a row's answer is this step's until it halts
                    halting = True
                    running = halt_step == S
                    answer = logits if s == 0 else torch.where(running.view(-1, *[1] * (logits.dim() - 1)), logits, answer)
                    halt_step = torch.where(halted(q, threshold) & running, s + 1, halt_step)
            if q is not None and q.dim() == 2 and S > 1:  # per token: halting changes what later tokens see
                halting = True
                with ctx:
                    answer, halt_step = decode(m, X, None, 0, S, threshold)
            if halting:  # the answer at the halting step, scored as the steps are
                with ctx:
                    loss = task.losses(answer, None, X, Y, data, config)[0]
                add(sums, S, S, w, device, {'loss': loss, **task.batch_metrics(answer, None, X, Y, data)})
                kept = task.eval_outputs(answer)
                if kept is not None:
                    outputs[S].append(kept)
            halt_sum += halt_step.float().mean() * w
            n_rows += w
            halt_hist += torch.bincount(halt_step.flatten() - 1, minlength=S)
            if outputs[0]:
                inputs.append(X)
                targets.append(Y)
        for t in [*sums.values(), halt_sum, halt_hist, n_rows]:  # every rank evaluates its own batches
            run.all_reduce(t)
        means = {name: (total / n_rows).tolist() for name, total in sums.items()}
        for name, values in means.items():
            for s in range(S):
                out[f'{split}_{name}_s{s + 1}'] = values[s]
            if halting and name != 'act_acc':
                out[f'{split}_{name}_halt'] = values[S]
        whole = (torch.cat(inputs), torch.cat(targets), [torch.cat(o) for o in outputs if o]) if inputs else (None,) * 3
        # eval_split scores each entry of outputs as a step: the (S+1)-th is the halting step's answer
        out.update({k[:-len(f'_s{S + 1}')] + '_halt' if k.endswith(f'_s{S + 1}') else k: v
                    for k, v in task.eval_split(m, data, split, *whole, config, run).items()})
        if halting:
            out[f'{split}_halt_step'] = halt_sum.item() / n_rows.item()
            out[f'{split}_halt_hist'] = (halt_hist / halt_hist.sum()).tolist()  # for plot.py's histogram
    m.train(was_training)
    if config['fsdp']:  # an FSDP root keeps its weights gathered after a forward; shard them again
        m.reshard()
    return out


def add(sums, S, i, w, device, metrics):
    """Add each metric (a batch mean: 0-dim tensor or float; None: not measured) times the batch's rows w
    to entry i of its [S + 1] sum."""
    for name, value in metrics.items():
        if value is not None:
            sums.setdefault(name, torch.zeros(S + 1, device=device))[i] += value * w
