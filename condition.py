"""
Conditioned initial states (yz_init_from): y_init and z_init computed per example from a frozen language
model's hidden states of the example written as text, instead of the same two vectors for every example.

    text  = the input's tokens, one character each (token_text: the task's text form of its vocabulary)
    h     = frozen_lm(text)                          # [B, T, W]: no grad, never trained, never saved
    c     = mean_t h            (yz_init_pool='mean')
          | softmax_t(h q) h    (yz_init_pool='attention', q a learned query)
    y_init, z_init = yz_init + proj(c).chunk(2)      # proj learned: at initialisation close to the fixed inits

The frozen model is 'ckpt:PATH', a nanoTRM language-model checkpoint (its hidden states: the answer state y
after its last supervision step, or a plain decoder's final normed states), or 'hf:PATH', a Hugging Face
causal LM saved in a local folder (its last hidden layer; `transformers` is imported only for this).
It is held outside the model's modules, so it is not in parameters(), state_dict(), the optimizer, EMA or
FSDP's shards: a checkpoint stores the projection only and reloads the frozen model from PATH.
"""
import math
import os

import torch
import torch.nn as nn


def load_frozen(spec, length):
    """(hidden: ids [B, T] -> states [B, T, W] float32, encode: text -> ids, W) of 'ckpt:PATH' or 'hf:PATH',
    for inputs of `length` tokens. ValueError with one line saying what is wrong otherwise."""
    with torch.device('cpu'):  # real weights, also when the model it conditions is built on the meta device
        return _load_frozen(spec, length)


def _load_frozen(spec, length):
    kind, _, path = spec.partition(':')
    if kind not in ('ckpt', 'hf') or not path:
        raise ValueError(f"yz_init_from={spec!r}: expected 'ckpt:PATH' (a nanoTRM language-model checkpoint) or "
                         f"'hf:PATH' (a local folder holding a Hugging Face causal LM)")
    if not os.path.exists(path):
        raise ValueError(f"yz_init_from={spec!r}: {path} not found; the frozen model is read from there at every "
                         f"start (checkpoints do not hold it)")
    if kind == 'ckpt':
        from checkpoint import load_model  # (checkpoint imports model, which imports this module lazily)
        from lm import tokenizer
        m, ckpt = load_model(path)
        if ckpt['task'] != 'lm':
            raise ValueError(f"yz_init_from={spec!r} is a {ckpt['task']} checkpoint; a language model's is needed")
        if m.config.block_size < length:
            raise ValueError(f"yz_init_from={spec!r}: its block_size {m.config.block_size} is shorter than the "
                             f"{length} tokens of an input; train it with block_size >= {length}")
        encode, width = tokenizer(ckpt.get('meta'))[0], m.config.n_embd

        def states(ids):
            if not m.config.recursion:
                return m.net(m.embed(ids))
            y = z = None
            for _ in range(m.n_sup):
                _, _, y, z = m(ids, y, z)
            return y
    else:
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise ValueError(f"yz_init_from={spec!r} needs transformers: pip install transformers") from None
        tok = AutoTokenizer.from_pretrained(path)
        m = AutoModelForCausalLM.from_pretrained(path).eval()
        encode = lambda text: tok(text, add_special_tokens=False)['input_ids']
        width = m.config.hidden_size
        states = lambda ids: m(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    m.requires_grad_(False)

    @torch.no_grad()
    def hidden(ids):
        if next(m.parameters()).device != ids.device:  # follows the model it conditions onto its device
            m.to(ids.device)
        return states(ids).float()
    return hidden, encode, width


class Conditioner(nn.Module):
    """The learned part: (dy, dz) [B, n_embd] each, to add to y_init and z_init, from the frozen model's view
    of the input tokens idx [B, L]."""

    def __init__(self, config):
        super().__init__()
        self.hidden, encode, width = load_frozen(config.yz_init_from, config.block_size)
        lut, bad = [], []
        for ch in config.token_text:
            ids = encode(ch)
            if len(ids) != 1:
                bad.append(ch)
            lut.append(ids[0] if ids else 0)
        if bad:
            raise ValueError(f"yz_init_from={config.yz_init_from!r}: its tokenizer does not read the characters "
                             f"{''.join(sorted(set(bad)))!r} of the task's text form {config.token_text!r} as one "
                             f"token each; use a model whose vocabulary has them")
        self.register_buffer('lut', torch.tensor(lut, dtype=torch.long), persistent=False)
        self.pool_query = nn.Parameter(torch.zeros(width)) if config.yz_init_pool == 'attention' else None
        self.proj = nn.Linear(width, 2 * config.n_embd)

    def forward(self, idx):
        h = self.hidden(self.lut[idx])                                   # [B, L, W]
        if self.pool_query is None:
            c = h.mean(1)
        else:  # starts as the mean (q = 0), learns where to look
            w = torch.softmax(h @ self.pool_query.float() / math.sqrt(h.size(-1)), dim=1)
            c = (w[..., None] * h).sum(1)
        return self.proj(c.to(self.proj.weight.dtype)).chunk(2, dim=-1)
