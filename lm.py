"""
The language-model task: nanoGPT's data format, next-token cross-entropy, tokenizers.

    data/<dataset>/train.bin, val.bin   uint16 token ids, one stream per split
    data/<dataset>/meta.pkl             optional: a char-level vocabulary (vocab_size, stoi, itos);
                                        GPT-2 BPE (tiktoken) when absent or tokenizer == 'gpt2'

A task module's surface (lm.py, puzzles.py, control.py; train.py calls only these):
    SPLITS, SCHEDULES                    the splits (the second picks best.pt) and allowed schedules (first = default)
    NEXT_COMMAND                         what to run on a trained model (train.py's last line names it)
    load(data_dir, config)               the data (ValueError with one line when it is not usable)
    model_args(data, config)             what the data fixes in the model (vocabulary, lengths, widths)
    draw(data, generator, shape)         random training rows and an augmentation seed (or None)
    get_batch(data, split, ix, aug_seed) (inputs, targets, puzzle ids or None) on the CPU
    eval_rows(data, split, generator, config, rank, world_size)  the evaluation batches of a split
    losses(logits, q, X, Y, data, config)     one supervision step's loss, ACT BCE, q accuracy
    batch_metrics(logits, q, X, Y, data)      per-batch means to report beside the loss (exact, ...)
    eval_outputs(logits)                 what eval_split needs of each step's outputs (None: nothing)
    eval_split(model, data, split, X, Y, outputs, config, run)  metrics over a whole split
    summary(metrics, split, S, config)   the lines an eval prints after the losses
    log_speed(tok_per_s, block_size, steps_per_iter)  throughput in the task's own unit, for the log
"""
import os
import pickle

import numpy as np
import torch
import torch.nn.functional as F

from model import halted

SPLITS = ('train', 'val')
SCHEDULES = ('batch',)  # trm halts whole sequences: a language model halts per token, at inference
NEXT_COMMAND = 'python sample.py --out_dir={out_dir}'  # what to run on a trained model
GPT2_VOCAB = 50304  # GPT-2's 50257 padded to a multiple of 64: faster matmuls


def load(data_dir, config):
    """The dataset's vocabulary (meta.pkl, or None for GPT-2) and split lengths, after checking that the
    splits are token streams long enough for block_size and that the vocabulary covers their ids."""
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
    return {'dir': data_dir, 'meta': meta, 'length': length, 'block_size': config['block_size'], 'system': None}


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
    windows = stream[ix.numpy()[:, None] + np.arange(data['block_size'] + 1)]
    tokens = torch.from_numpy(windows.astype(np.int64))
    return tokens[:, :-1], tokens[:, 1:], None


def eval_rows(data, split, generator, config, rank, world_size):
    """eval_iters random batches per rank (the generator is seeded per rank)."""
    n = data['length'][split] - data['block_size']
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


def batch_metrics(logits, q, X, Y, data):
    return {}


def eval_outputs(logits):
    return None


def eval_split(model, data, split, X, Y, outputs, config, run):
    return {}


def summary(metrics, split, S, config):
    if f'{split}_halt_step' not in metrics:
        return ''
    return (f"  halting per token (sigmoid(q) > {config['halt_threshold']}): {split} loss {metrics[f'{split}_loss_halt']:.4f} at "
            f"{metrics[f'{split}_halt_step']:.2f} of {S} steps per token")


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
