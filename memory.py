"""
The persistent memory a model built with memory_slots > 0 reads (model.GPT.net: before every z update's
net call, and the y update's with memory_read_y): a learned bank of key/value slots, read by cross-attention,
and the surprise-gated write that generate.py applies at inference.
"""
import math

import torch
import torch.nn as nn


class Memory(nn.Module):
    """A persistent memory: memory_slots learned key/value vectors, read by cross-attention from every
    position (n_head heads, no position encoding: the same bank for every token, so a KV cache stays exact).
    Each head's read is scaled by its certainty 1 - H(p) / log(memory_slots), p its attention over the slots:
    a diffuse read (p near uniform) contributes little, a read that picks one slot contributes fully."""

    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.keys = nn.Parameter(torch.empty(config.memory_slots, config.n_embd))
        self.values = nn.Parameter(torch.empty(config.memory_slots, config.n_embd))
        self.c_q = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)

    def attend(self, h):
        """Each head's read query q [B, H, L, hd] (c_q(h), what the keys are compared with) and its
        attention over the slots p [B, H, L, M]."""
        B, L, D = h.shape
        M, hd = self.keys.size(0), D // self.n_head
        q = self.c_q(h).view(B, L, self.n_head, hd).transpose(1, 2)       # [B, H, L, hd]
        k = self.keys.to(q.dtype).view(M, self.n_head, hd).transpose(0, 1)  # [H, M, hd]
        return q, torch.softmax((q @ k.transpose(1, 2)).float() / math.sqrt(hd), dim=-1)  # [B, H, L, M]

    def forward(self, h):
        B, L, D = h.shape
        M, hd = self.keys.size(0), D // self.n_head
        q, p = self.attend(h)
        v = self.values.to(q.dtype).view(M, self.n_head, hd).transpose(0, 1)
        certainty = 1 + (p * torch.log(p.clamp_min(1e-30))).sum(-1, keepdim=True) / math.log(M)
        read = (p * certainty).to(v.dtype) @ v                               # [B, H, L, hd]
        return self.c_proj(read.transpose(1, 2).reshape(B, L, D))

    @torch.no_grad()
    def write(self, h, v, surprise, threshold, rate):
        """Surprise-gated write, at inference only (generate.py; training never calls it). h [..., D]: the
        states that read the memory (the input of a token's last read), v [..., D]: what a later read should
        recall (the token's answer state), surprise [...]: each token's negative log-likelihood in nats.
        Each token with surprise > threshold, in order (a write is seen by the next token's slot choice):
            q = c_q(h)                                  the token's read query, in the keys' space
            j = argmax_m sum_heads softmax(q . keys / sqrt(head_dim))[m]   the slot its read attends to most
            keys[j]   <- (1 - rate) keys[j]   + rate q
            values[j] <- (1 - rate) values[j] + rate v
        Only slot j moves: it is the one this query already reads, and the others keep what they hold (a
        soft write over every slot would blur them all). generate passes v = the token's answer state y, so a
        later token whose query matches reads back what the surprising token settled on. In place on keys/values, not undone here (generate
        restores them). Returns the slot each token wrote [...], -1 where it did not."""
        D = h.size(-1)
        h, v = h.reshape(-1, 1, D), v.reshape(-1, D)
        slots = torch.full((h.size(0),), -1, dtype=torch.long)
        for i in (surprise.reshape(-1) > threshold).nonzero()[:, 0].tolist():
            q, p = self.attend(h[i:i + 1])
            j = int(p.sum(1).argmax())
            q = q.transpose(1, 2).reshape(D).to(self.keys.dtype)
            self.keys[j] = (1 - rate) * self.keys[j] + rate * q
            self.values[j] = (1 - rate) * self.values[j] + rate * v[i].to(self.values.dtype)
            slots[i] = j
        return slots.view(surprise.shape)
