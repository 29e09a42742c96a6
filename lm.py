"""
The language-model task: nanoGPT's data format, next-token cross-entropy, tokenizers.

    data/<dataset>/train.bin, val.bin   uint16 token ids, one stream per split
    data/<dataset>/meta.pkl             optional: a char-level vocabulary (vocab_size, stoi, itos);
                                        GPT-2 BPE (tiktoken) when absent or tokenizer == 'gpt2'
    data/<dataset>/train_mask.bin, ...  optional: uint8 per token, 1 where its prediction counts in the loss
                                        (a task's answers); 0-tokens are targets -100 (ignored)
    data/<dataset>/exact.json           optional: prompts and answers scored by exact match in every eval
                                        (data/reasoning/prepare.py writes both)

A task module's surface (lm.py, puzzles.py, control.py; train.py calls only these):
    SPLITS, SCHEDULES                    the splits (the second picks best.pt) and allowed schedules (first = default)
    NEXT_COMMAND                         what to run on a trained model (train.py's last line names it)
    load(data_dir, config)               the data (ValueError with one line when it is not usable)
    model_args(data, config)             what the data fixes in the model (vocabulary, lengths, widths)
    draw(data, generator, shape)         random training rows and an augmentation seed (or None)
    get_batch(data, split, ix, aug_seed) (inputs, targets, puzzle ids or None) on the CPU
    eval_rows(data, split, generator, config, rank, world_size)  the evaluation batches of a split
    losses(logits, q, X, Y, data, config)     one supervision step's loss, ACT BCE, q accuracy
    next_input(X, logits, data, config)  the next supervision step's inputs (control's rollout feedback; else X)
    batch_metrics(logits, q, X, Y, data)      per-batch means to report beside the loss (exact, ...)
    eval_outputs(logits)                 what eval_split needs of each step's outputs (None: nothing)
    eval_split(model, data, split, X, Y, outputs, config, run)  metrics over a whole split
    summary(metrics, split, S, config)   the lines an eval prints after the losses
    log_speed(tok_per_s, block_size, steps_per_iter)  throughput in the task's own unit, for the log
"""
import json
import os
import pickle

import numpy as np
import torch
import torch.nn.functional as F

from generate import decode
from model import halted

SPLITS = ('train', 'val')
SCHEDULES = ('batch',)  # trm halts whole sequences: a language model halts per token, at inference
NEXT_COMMAND = 'python sample.py --out_dir={out_dir}'  # what to run on a trained model
GPT2_VOCAB = 50304  # GPT-2's 50257 padded to a multiple of 64: faster matmuls


def load(data_dir, config):
    """The dataset's vocabulary (meta.pkl, or None for GPT-2) and split lengths, after checking that the
    splits are token streams long enough for block_size and that the vocabulary covers their ids."""
    if config.get('rollout_feedback'):
        raise ValueError("rollout_feedback is for control data (data/control/<system>); set it False for a language model")
    meta = None
    meta_path = os.path.join(data_dir, 'meta.pkl')
    if os.path.exists(meta_path):
        with open(meta_path, 'rb') as f:
            meta = pickle.load(f)
    name = os.path.basename(os.path.normpath(data_dir))
    vocab_size = model_args({'meta': meta}, config)['vocab_size']
    length = {}
    for split in SPLITS:
        path = os.path.join(data_dir, f'{split}.bin')
        if not os.path.exists(path):
            raise ValueError(f"{path} not found; run `python data/{name}/prepare.py` first")
        size = os.path.getsize(path)
        length[split] = size // 2
        if size % 2:
            raise ValueError(f"{path} has an odd number of bytes ({size}): not a stream of uint16 tokens; "
                             f"write it again with `python data/{name}/prepare.py`")
        if length[split] <= config['block_size']:
            raise ValueError(f"{path} has {length[split]} tokens, too few for block_size={config['block_size']} "
                             f"(windows of block_size + 1 tokens): lower block_size, or prepare more text")
        head = int(np.memmap(path, dtype=np.uint16, mode='r')[:2 ** 20].max())  # a bounded look: corpora are large
        if head >= vocab_size:
            raise ValueError(f"{path} holds token id {head}, outside the vocabulary of {vocab_size} "
                             f"({'meta.pkl' if meta else 'GPT-2'}); write the data and meta.pkl again together")
        if meta is None and length[split] >= 1000 and head < 256:
            raise ValueError(f"{data_dir} has no meta.pkl, so its tokens would be read as GPT-2's, but every id "
                             f"is < 256: a character-level set; restore meta.pkl (`python data/{name}/prepare.py`)")
    masked = os.path.exists(os.path.join(data_dir, 'train_mask.bin'))
    for split in SPLITS if masked else ():
        path = os.path.join(data_dir, f'{split}_mask.bin')
        if not os.path.exists(path) or os.path.getsize(path) != length[split]:
            raise ValueError(f"{path} is missing or not one byte per token of {split}.bin; write the data again "
                             f"(`python data/{name}/prepare.py`)")
    exact = None
    if os.path.exists(os.path.join(data_dir, 'exact.json')):
        with open(os.path.join(data_dir, 'exact.json')) as f:
            exact = json.load(f)
        exact['rows'] = {split: pack_examples(examples, meta, config['block_size'], f"{data_dir}/exact.json {split}")
                         for split, examples in exact['splits'].items()}
    return {'dir': data_dir, 'meta': meta, 'length': length, 'block_size': config['block_size'], 'system': None,
            'masked': masked, 'exact': exact}


def model_args(data, config):
    """A char-level meta.pkl's vocabulary as it is, else GPT-2's; causal attention."""
    meta = data['meta']
    vocab_size = meta['vocab_size'] if meta and meta.get('tokenizer') != 'gpt2' else GPT2_VOCAB
    return {'vocab_size': vocab_size, 'causal': True}


def draw(data, generator, shape):
    """Random window starts of the train split; no augmentation."""
    return torch.randint(data['length']['train'] - data['block_size'], shape, generator=generator), None


def get_batch(data, split, ix, aug_seed=None):
    """Windows of block_size + 1 tokens starting at ix: inputs and next-token targets."""
    # re-open the memmap every batch: a long-lived one keeps growing RSS
    stream = np.memmap(os.path.join(data['dir'], f'{split}.bin'), dtype=np.uint16, mode='r')
    windows = ix.numpy()[:, None] + np.arange(data['block_size'] + 1)
    tokens = torch.from_numpy(stream[windows].astype(np.int64))
    Y = tokens[:, 1:]
    if data.get('masked'):  # only the masked-in tokens are targets (a task's answers)
        mask = np.memmap(os.path.join(data['dir'], f'{split}_mask.bin'), dtype=np.uint8, mode='r')
        Y = Y.masked_fill(torch.from_numpy(mask[windows[:, 1:]] == 0), -100)
    return tokens[:, :-1], Y, None


def eval_rows(data, split, generator, config, rank, world_size):
    """eval_iters random batches per rank (the generator is seeded per rank); eval_iters=0: every window of
    the split once, the windows spread over the ranks."""
    n = data['length'][split] - data['block_size']
    if config['eval_iters'] == 0:
        return list(torch.arange(0, n, data['block_size']).split(config['batch_size']))[rank::world_size]
    return [torch.randint(n, (config['batch_size'],), generator=generator) for _ in range(config['eval_iters'])]


def cross_entropy(logits, Y, kind='softmax'):
    """Per-target cross-entropy [B, L] in float32, 0 where Y is ignored (-100). kind 'stablemax': TRM's
    stable-max, s(x) = x + 1 for x >= 0 and 1 / (1 - x) below in place of exp, computed in float64 as
    the official code does."""
    if kind == 'softmax':
        return F.cross_entropy(logits.float().transpose(1, 2), Y, reduction='none')
    x = logits.double()
    # the unused branch is clamped: at x == 1 (common with bf16 logits) 1 / (1 - x) is inf, and its
    # gradient times where()'s 0 is NaN. Same values and gradients as the official code's 1 - x + 1e-30
    s_x = torch.where(x < 0, 1 / (1 - x.clamp(max=0)), x + 1)
    logp = torch.log(s_x.gather(-1, Y.clamp(min=0)[..., None])[..., 0] / s_x.sum(-1))
    return torch.where(Y != -100, -logp, 0).float()


def losses(logits, q, X, Y, data, config):
    """Mean cross-entropy over the tokens; the q-head (one logit per token) learns whether the token's
    argmax is already right: (loss, ACT BCE, q accuracy), the last two None without a q-head."""
    mask = Y != -100
    loss = cross_entropy(logits, Y, config['loss']).sum() / mask.sum()
    if q is None:
        return loss, None, None
    right = (logits.argmax(-1) == Y)[mask]
    q = q[mask].float()
    bce = F.binary_cross_entropy_with_logits(q, right.float())
    return loss, bce, (halted(q) == right).float().mean()


def next_input(X, logits, data, config):
    return X


def batch_metrics(logits, q, X, Y, data):
    return {}


def eval_outputs(logits):
    return None


# ----------------------------------------------------------------------------- exact match (exact.json)

def pack_examples(examples, meta, block_size, where):
    """Examples ({prompt, answer, group, token_groups}) packed whole into rows of block_size + 1 tokens,
    each row starting with the newline that precedes every example in the training stream, the rest padded
    with newlines. Returns tokens [R, block_size + 1]; eid [R, block_size]: the example whose answer (and
    terminating newline) each target position predicts, else -1; label [R, block_size]: that answer
    character's token group (-1 for the newline and elsewhere); group [N]: each example's group."""
    stoi, newline = meta['stoi'], meta['stoi']['\n']
    rows = []  # (tokens, eid, label) of each row

    def new_row():
        rows.append((np.full(block_size + 1, newline), np.full(block_size, -1), np.full(block_size, -1)))
        return 1  # tokens used: the leading newline
    used = new_row()
    for i, ex in enumerate(examples):
        text = ex['prompt'] + ex['answer'] + '\n'
        if len(text) > block_size:
            raise ValueError(f"{where}: an example of {len(text)} tokens does not fit block_size={block_size}; "
                             f"raise block_size")
        if used + len(text) > block_size + 1:
            used = new_row()
        tokens, eid, label = rows[-1]
        try:
            tokens[used:used + len(text)] = [stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(f"{where}: character {e.args[0]!r} is not in meta.pkl's vocabulary; write the data again")
        start = used + len(ex['prompt']) - 1  # the target position that predicts the answer's first token
        eid[start:start + len(ex['answer']) + 1] = i
        label[start:start + len(ex['answer'])] = ex['token_groups']
        used += len(text)
    tokens, eid, label = (torch.from_numpy(np.stack(a)) for a in zip(*rows))
    return {'tokens': tokens, 'eid': eid, 'label': label, 'group': torch.tensor([ex['group'] for ex in examples])}


def wrong_answers(logits, Y, eid, n):
    """Per example (of n), how many of its answer tokens are not the argmax [n]. Greedy decoding writes an
    example's answer exactly iff this is 0: while every token so far is right, the greedy prefix is the
    true one, so teacher-forced argmaxes are what greedy decoding picks."""
    at = eid >= 0
    return torch.zeros(n, device=Y.device).index_add_(0, eid[at], (logits.argmax(-1) != Y)[at].float())


@torch.no_grad()
def exact_match(model, rows, S, config, run):
    """Exact match of greedy decoding at each of S supervision steps and, with a q-head and S > 1, at each
    token's halting step (model.halted, through generate.decode); the mean halting step of the answer
    tokens of each token group. At most eval_iters * batch_size rows (eval_iters=0: all), spread over the ranks."""
    n, n_rows = len(rows['group']), len(rows['tokens'])
    n_rows = min(n_rows, config['eval_iters'] * config['batch_size'] or n_rows)
    halting = model.q_head is not None and S > 1
    wrong = torch.zeros(S + halting, n, device=run.device)
    scored = torch.zeros(n, device=run.device)
    labels = int(rows['label'].max()) + 1
    halt_steps = torch.zeros(2, max(labels, 0), device=run.device)  # per token group: summed steps, tokens
    # every rank runs as many batches (FSDP runs forwards in lockstep): the last rows wrap around, and the
    # repeats count once (an example stays wrong or right; its halting steps are not added twice)
    slots = torch.arange(run.rank, -(-n_rows // run.world_size) * run.world_size, run.world_size)
    for b in slots.split(config['batch_size']):
        tokens, eid, label = (rows[k][b % n_rows].to(run.device) for k in ('tokens', 'eid', 'label'))
        label = label.masked_fill((b >= n_rows).to(run.device)[:, None], -1)
        X, Y = tokens[:, :-1], tokens[:, 1:]
        scored[eid[eid >= 0].unique()] = 1
        y = z = None
        for s in range(S):
            with run.ctx:
                logits, _, y, z = model(X, y, z)
            wrong[s] += wrong_answers(logits, Y, eid, n)
        if halting:
            with run.ctx:
                logits, steps = decode(model, X, None, 0, S, config['halt_threshold'])
            wrong[S] += wrong_answers(logits, Y, eid, n)
            at = label >= 0
            halt_steps[0].index_add_(0, label[at], steps[at].float())
            halt_steps[1].index_add_(0, label[at], torch.ones_like(label[at], dtype=torch.float))
    for t in (wrong, scored, halt_steps):
        run.all_reduce(t)
    return (wrong == 0) & (scored > 0), scored > 0, halt_steps


def eval_split(model, data, split, X, Y, outputs, config, run):
    """Exact match on exact.json's examples, per supervision step (`{name}_exact_s{k}`), at the halting step
    (`_s{S+1}`, logged as `_halt`), and per example group (`{name}_exact_{group}{g}_s{k}`), for its train
    sample at the train split and its other splits (val, hard) at val; the mean halting step of answer
    tokens per token group (`{name}_halt_step_{label}`)."""
    exact = data.get('exact')
    if not exact:
        return {}
    out = {}
    names = [k for k in exact['rows'] if (k == 'train') == (split == 'train')]
    for name in names:
        rows = exact['rows'][name]
        right, scored, halt_steps = exact_match(model, rows, run.n_sup, config, run)
        group = rows['group'].to(right.device)
        for s in range(len(right)):
            out[f'{name}_exact_s{s + 1}'] = (right[s].sum() / scored.sum()).item()
            for g in group[scored].unique().tolist():
                at = scored & (group == g)
                out[f"{name}_exact_{exact['group']}{g}_s{s + 1}"] = (right[s][at].sum() / at.sum()).item()
        for value, (steps, count) in enumerate(halt_steps.T.tolist()):
            if count:
                label = exact['token_groups'].get(str(value), f"{exact['group']}{value}").replace(' ', '_')
                out[f'{name}_halt_step_{label}'] = steps / count
    return out


def summary(metrics, split, S, config):
    lines = []
    if f'{split}_halt_step' in metrics:
        lines.append(f"  halting per token (sigmoid(q) > {config['halt_threshold']}): {split} loss "
                     f"{metrics[f'{split}_loss_halt']:.4f} at {metrics[f'{split}_halt_step']:.2f} of {S} steps per token")
    for name in ('train', split, 'hard'):
        if f'{name}_exact_s1' in metrics:
            steps = ' '.join(f"{metrics[f'{name}_exact_s{s + 1}']:.3f}" for s in range(S))
            halt = f", at halting {metrics[f'{name}_exact_halt']:.3f}" if f'{name}_exact_halt' in metrics else ''
            lines.append(f"  {name} exact match per step: {steps}{halt}")
    return '\n'.join(lines)


def log_speed(tok_per_s, block_size, steps_per_iter):
    return {}


# ----------------------------------------------------------------------------- text (sample.py)

def tokenizer(meta):
    """(encode, decode) of a dataset's meta.pkl (None: GPT-2 BPE). encode raises ValueError naming
    characters outside a char-level vocabulary."""
    if meta and 'stoi' in meta:
        stoi, itos = meta['stoi'], meta['itos']

        def encode(text):
            unknown = sorted(set(c for c in text if c not in stoi))
            if unknown:
                raise ValueError(f"the prompt has characters outside the model's vocabulary: {unknown!r}; remove them")
            return [stoi[c] for c in text]
        return encode, lambda ids: ''.join(itos[i] for i in ids)
    import tiktoken
    enc = tiktoken.get_encoding('gpt2')
    encode = lambda text: enc.encode(text, allowed_special={'<|endoftext|>'})
    decode = lambda ids: enc.decode([i for i in ids if i < enc.n_vocab])  # the padded vocab's extra ids are not text
    return encode, decode
