"""
nanoTRM model: one small stack of transformer blocks applied recursively (TRM).

    x    = embed(idx)
    y, z = y_init, z_init
    for s in 1..n_sup:                        # deep supervision: one forward() each
        for c in 1..T_recursion:              # all but the last cycle under no_grad
            for i in 1..n_loops:
                z = net(z, x + y)             # latent reasoning sees the input
            y = net(y, z)                     # answer update does not
        logits_s, q_s = head(y), q_head(y)
        y, z = y.detach(), z.detach()

With recursion=False the same blocks form a plain pre-norm Llama-style decoder:
logits = head(final_norm(blocks(x))).
"""
import functools
import inspect
import json
import math
import os
import pickle
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    block_size: int = 256
    vocab_size: int = 50304
    n_layer: int = 2
    n_head: int = 4
    n_kv_head: int = 4            # < n_head: grouped-query attention
    n_embd: int = 128
    mlp: str = 'swiglu'           # swiglu | gelu | silu
    expansion: float = 4.0        # hidden width / n_embd (swiglu: 2/3 of it per branch, as Llama)
    norm: str = 'rmsnorm'         # rmsnorm | layernorm
    norm_position: str = ''       # post (TRM: bounded states under recursion) | pre; '' = post with
                                  # recursion, pre without (the plain GPT is a pre-norm decoder)
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    causal: bool = True           # causal for LMs, bidirectional for puzzles/control
    dropout: float = 0.0
    bias: bool = False
    tie_weights: bool = False
    recursion: bool = True        # False: plain GPT, blocks run once over x
    n_loops: int = 3              # z updates per cycle
    T_recursion: int = 2          # cycles per supervision step, the first T-1 without grad
    n_sup: int = 4                # deep-supervision steps
    learnable_inits: bool = False # y_init/z_init as parameters (they only learn when T_recursion == 1:
                                  # the no-grad cycles cut their gradient otherwise)
    act: bool = True              # q-head for adaptive computation time
    mixer: str = 'attention'      # attention | mlp_t (TRM: an MLP over the sequence axis, for small fixed grids)
    puzzle_emb_ndim: int = 0      # > 0: a learned embedding per puzzle id, laid over a prefix of the sequence
    puzzle_emb_len: int = 0       # prefix positions (0: ceil(puzzle_emb_ndim / n_embd)); the q-head reads the first
    num_puzzle_ids: int = 1
    n_features: int = 0           # > 0: continuous inputs (control): a linear embedding of per-step features
    n_outputs: int = 0            # > 0: a linear head of this width (control) instead of logits over the vocabulary
    trm_faithful: bool = False    # the official TRM code's numerics: sqrt(n_embd)-scaled embeddings, weightless
                                  # fp32 RMSNorms, SwiGLU widths rounded to 256, a 2-logit q-head, LeCun init

    def __post_init__(self):
        if not self.norm_position:
            self.norm_position = 'post' if self.recursion else 'pre'
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if self.n_head % self.n_kv_head != 0:
            raise ValueError(f"n_head={self.n_head} must be divisible by n_kv_head={self.n_kv_head}")
        if (self.n_embd // self.n_head) % 2 != 0:
            raise ValueError(f"head size n_embd/n_head={self.n_embd // self.n_head} must be even for RoPE")
        for key, allowed in (('mlp', ('swiglu', 'gelu', 'silu')), ('norm', ('rmsnorm', 'layernorm')),
                             ('norm_position', ('post', 'pre')), ('mixer', ('attention', 'mlp_t'))):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key}={getattr(self, key)!r} is not one of {allowed}")
        for key in ('n_loops', 'T_recursion', 'n_sup'):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.mixer == 'mlp_t' and self.causal:
            raise ValueError("mixer='mlp_t' mixes every position with every other: set causal=False")

    @property
    def prefix_len(self):
        """Positions the puzzle embedding occupies before the tokens."""
        if not self.puzzle_emb_ndim:
            return 0
        return self.puzzle_emb_len or -(-self.puzzle_emb_ndim // self.n_embd)

    @property
    def seq_len(self):
        return self.block_size + self.prefix_len

    @property
    def hidden_dim(self):
        return mlp_width(self, self.n_embd)

    @classmethod
    def keys(cls):
        return [f.name for f in fields(cls)]


def mlp_width(config, size):
    """Hidden width of an MLP over features of `size`."""
    if config.mlp != 'swiglu':
        return int(config.expansion * size)
    if config.trm_faithful:  # the official code: round(2/3 e size) up to a multiple of 256
        return 256 * -(-round(2 * config.expansion * size / 3) // 256)
    return 32 * math.ceil(2 * config.expansion * size / 3 / 32)  # 2/3: params of a 2-matrix MLP; 32 for kernels


class FP32RMSNorm(nn.Module):
    """RMSNorm without a weight, computed in float32 (the official TRM code's norm)."""

    def __init__(self, eps):
        super().__init__()
        self.eps = eps

    def forward(self, h):
        # spelled out, not F.rms_norm: the same rounding as the official code, which the recursion would
        # otherwise amplify (a 1-ulp difference grows to 1e-2 in the logits after 3 supervision steps)
        x = h.float()
        return (x * torch.rsqrt(x.square().mean(-1, keepdim=True) + self.eps)).to(h.dtype)

def make_norm(config, size=None):
    size = size or config.n_embd
    if config.trm_faithful:
        return FP32RMSNorm(config.norm_eps)
    if config.norm == 'rmsnorm':
        return nn.RMSNorm(size, eps=config.norm_eps)
    return nn.LayerNorm(size, eps=config.norm_eps, bias=config.bias)


def trunc_normal(t, std):
    """Normal(0, std) truncated at 2 std, rescaled so that std is the real one (as jax/flax, and TRM, do)."""
    s = std / 0.8796256610342398  # the std of a unit normal truncated at +-2
    return torch.nn.init.trunc_normal_(t, std=s, a=-2 * s, b=2 * s)


def rope_tables(head_dim, length, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)  # rotate-half layout: frequencies repeat over halves
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):
    # x: [B, L, heads, hd], cos/sin: [L, 1, hd]. x * cos + rotate_half(x) * sin, with
    # rotate_half(x) * sin == roll(x, hd/2) * [-sin1, sin2]: one roll instead of chunk/neg/cat over x
    half = x.size(-1) // 2
    sin = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)
    return torch.addcmul(x * cos, x.roll(half, dims=-1), sin)


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head, self.n_kv_head = config.n_head, config.n_kv_head
        self.head_dim = config.n_embd // config.n_head
        self.c_attn = nn.Linear(config.n_embd, (config.n_head + 2 * config.n_kv_head) * self.head_dim, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.causal, self.dropout = config.causal, config.dropout

    def forward(self, h, cos, sin, cache=None):
        B, L, _ = h.shape
        qkv = self.c_attn(h).view(B, L, self.n_head + 2 * self.n_kv_head, self.head_dim)
        # rope on q and k together, in the contiguous [B, L, heads, hd] layout (elementwise ops run fastest there)
        qk = apply_rope(qkv[:, :, :self.n_head + self.n_kv_head], cos.to(qkv.dtype), sin.to(qkv.dtype))
        q, k = qk.split([self.n_head, self.n_kv_head], dim=2)
        v = qkv[:, :, self.n_head + self.n_kv_head:]
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        mask, is_causal = None, self.causal and L > 1
        if cache is not None:  # decoding: all of this site's keys/values so far, and which ones each new token sees
            k, v, mask = cache(k, v)
            is_causal = False
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                             dropout_p=self.dropout if self.training else 0.0,
                                             enable_gqa=self.n_kv_head != self.n_head)
        return self.c_proj(out.transpose(1, 2).reshape(B, L, -1))


class MLP(nn.Module):
    def __init__(self, config, size=None):
        super().__init__()
        self.kind, size = config.mlp, size or config.n_embd
        hidden = mlp_width(config, size)
        self.c_fc = nn.Linear(size, 2 * hidden if config.mlp == 'swiglu' else hidden, bias=config.bias)  # [gate; up]
        self.c_proj = nn.Linear(hidden, size, bias=config.bias)

    def forward(self, h):
        h = self.c_fc(h)
        if self.kind == 'swiglu':
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h) if self.kind == 'gelu' else F.silu(h)
        return self.c_proj(h)


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.post = config.norm_position == 'post'
        if config.mixer == 'mlp_t':  # mixes positions as an MLP over the sequence axis (fixed-size grids)
            self.mlp_t, self.norm1 = MLP(config, config.seq_len), make_norm(config, config.seq_len)
        else:
            self.attn, self.norm1 = Attention(config), make_norm(config)
        self.mlp, self.norm2 = MLP(config), make_norm(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, h, cos, sin, cache=None):
        if hasattr(self, 'mlp_t'):  # transposed to [B, D, L]: the MLP and its norm run over the sequence
            h = h.transpose(1, 2)
            h = self.norm1(h + self.drop(self.mlp_t(h))) if self.post else h + self.drop(self.mlp_t(self.norm1(h)))
            h = h.transpose(1, 2)
        elif self.post:  # TRM: h = norm(h + f(h)) keeps every state at unit scale
            h = self.norm1(h + self.drop(self.attn(h, cos, sin, cache)))
        else:
            h = h + self.drop(self.attn(self.norm1(h), cos, sin, cache))
        return self.norm2(h + self.drop(self.mlp(h))) if self.post else h + self.drop(self.mlp(self.norm2(h)))


class KVCache:
    """Keys/values of every attention site of the recursion, preallocated for a whole window.

    A site is one (supervision step, cycle, net call, layer); each keeps its own keys and
    values, because the same layer sees different states at each call. k, v: one tensor
    [B, n_kv_head, block_size, head_dim] per site, slot j holding the window's token j;
    decode() allocates them. New tokens are written in place and attention runs over all
    block_size slots with a mask, so every one-token step has the same shapes (a compiled step
    is one graph, no recompiles). Separate tensors rather than views of one buffer: inductor
    writes a graph input in place, but a write into a view of one makes it copy the whole
    buffer, every token. Slots past the newest token may hold stale values: the mask hides them."""

    def __init__(self, k=None, v=None, positions=None, mask=None):
        self.k, self.v, self.positions, self.mask, self.site = k, v, positions, mask, 0

    def allocate(self, sites, shape, dtype, device):  # shape of one site: [B, n_kv_head, block_size, head_dim]
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(sites)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(sites)]
        self.slots = torch.arange(shape[2], device=device)
        self.causal = self.slots <= self.slots[:, None]  # row p: the slots a token at position p sees

    def step(self, s, n, positions, mask):
        """The n sites of supervision step s, for new tokens at positions [L] seeing mask [L, block_size].
        A view with its own site counter, visited in a fixed order by forward()."""
        return KVCache(self.k[s * n:(s + 1) * n], self.v[s * n:(s + 1) * n], positions, mask)

    def __call__(self, k, v):  # k, v: [B, n_kv_head, L, hd] of the new tokens -> the site's k, v, mask
        k_all, v_all = self.k[self.site], self.v[self.site]
        k_all[:, :, self.positions] = k.to(k_all.dtype)
        v_all[:, :, self.positions] = v.to(v_all.dtype)
        self.site += 1
        return k_all, v_all, self.mask


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        # inputs: tokens, or per-step feature vectors (control); a puzzle embedding may lead the sequence
        self.wte = nn.Linear(config.n_features, config.n_embd) if config.n_features else nn.Embedding(config.vocab_size, config.n_embd)
        if config.puzzle_emb_ndim:
            self.puzzle_emb = nn.Embedding(config.num_puzzle_ids, config.puzzle_emb_ndim)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        # pre-norm needs a final norm: it ends the plain GPT and keeps recursive states bounded
        self.norm_f = make_norm(config) if config.norm_position == 'pre' else nn.Identity()
        self.lm_head = nn.Linear(config.n_embd, config.n_outputs or config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight
        # the official TRM q-head has a second ("continue") logit that its default training ignores
        self.q_head = nn.Linear(config.n_embd, 2 if config.trm_faithful else 1) if config.recursion and config.act else None
        if config.recursion:
            inits = trunc_normal(torch.empty(2, config.n_embd), 1.0)  # y_init, z_init (TRM's H_init, L_init)
            if config.learnable_inits:
                self.yz_init = nn.Parameter(inits)
            else:
                self.register_buffer('yz_init', inits)
        cos, sin = rope_tables(config.n_embd // config.n_head, config.seq_len, config.rope_theta)
        self.register_buffer('rope_cos', cos, persistent=False)
        self.register_buffer('rope_sin', sin, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # residual projections: GPT-2 scaled init
            if name.endswith('c_proj.weight'):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        if not config.tie_weights:  # unit-scale embeddings match the unit-scale y/z states
            # (a linear embedding of features: 1 / sqrt(fan_in) keeps it unit-scale for unit-scale features)
            torch.nn.init.normal_(self.wte.weight, mean=0.0, std=1.0 / math.sqrt(config.n_features) if config.n_features else 1.0)
        if config.trm_faithful:  # the official init: truncated LeCun normal, embeddings 1/sqrt(D) (scaled up in embed)
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    fan_in = m.weight.size(1) if isinstance(m, nn.Linear) else config.n_embd
                    trunc_normal(m.weight, 1.0 / math.sqrt(fan_in))
        if config.puzzle_emb_ndim:  # a new puzzle starts from nothing
            torch.nn.init.zeros_(self.puzzle_emb.weight)
        if self.q_head is not None:  # start out predicting "not yet right" (TRM)
            torch.nn.init.zeros_(self.q_head.weight)
            torch.nn.init.constant_(self.q_head.bias, -5.0)

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            torch.nn.init.zeros_(module.bias)

    @property
    def n_sup(self):
        return self.config.n_sup if self.config.recursion else 1

    def net(self, h, inj=None, cache=None, pos=0):
        """The one block stack, shared by every call of the recursion. pos: position of h's first token."""
        rows = slice(pos, pos + h.size(1)) if cache is None else cache.positions
        cos, sin = self.rope_cos[rows, None], self.rope_sin[rows, None]
        if inj is not None:
            h = h + inj
        for block in self.blocks:
            h = block(h, cos, sin, cache)
        return self.norm_f(h)

    def embed(self, idx, puzzle_ids=None):
        """x: [B, prefix_len + L, D]. The puzzle embedding (zero-padded to whole positions) leads the tokens."""
        cfg = self.config
        x = self.wte(idx)
        if cfg.puzzle_emb_ndim:
            p = F.pad(self.puzzle_emb(puzzle_ids), (0, cfg.prefix_len * cfg.n_embd - cfg.puzzle_emb_ndim))
            x = torch.cat([p.view(x.size(0), cfg.prefix_len, cfg.n_embd).to(x.dtype), x], dim=1)
        if cfg.trm_faithful:  # the official code's forward dtype: under autocast, x and the y/z states are
            dev = x.device.type  # bf16 as there (half the bytes through every norm and residual)
            if torch.is_autocast_enabled(dev):
                x = x.to(torch.get_autocast_dtype(dev))
            x = math.sqrt(cfg.n_embd) * x
        return self.drop(x)

    def initial_state(self, x):
        B, L = x.shape[:2]
        y_init, z_init = self.yz_init
        return y_init.expand(B, L, -1), z_init.expand(B, L, -1)

    def cycle(self, x, y, z, cache=None, pos=0):
        for _ in range(self.config.n_loops):
            z = self.net(z, x + y, cache, pos)
        y = self.net(y, z, cache, pos)
        return y, z

    def forward(self, idx, y=None, z=None, cache=None, pos=0, puzzle_ids=None):
        """One supervision step: (logits, q_logits, y, z). Only this step's last
        cycle carries a graph, and the returned y, z are detached, so the caller can
        backward right away and feed y, z to the next step. cache/pos: see generate().
        q_logits: per token [B, L] when causal (LM), per sequence [B] otherwise (puzzles, control)."""
        cfg = self.config
        if pos + idx.size(1) > cfg.block_size or (cfg.mixer == 'mlp_t' and idx.size(1) != cfg.block_size):
            raise ValueError(f"sequence length {pos + idx.size(1)} does not fit block_size {cfg.block_size}"
                             + (" (mlp_t needs exactly block_size)" if cfg.mixer == 'mlp_t' else ""))
        x = self.embed(idx, puzzle_ids)
        P = cfg.prefix_len  # outputs are read after the prefix
        if not cfg.recursion:
            return self.lm_head(self.net(x, None, cache, pos)[:, P:]), None, None, None
        if y is None:
            y, z = self.initial_state(x)
        if cfg.trm_faithful:
            y, z = y.to(x.dtype), z.to(x.dtype)
        with torch.no_grad():
            for _ in range(cfg.T_recursion - 1):
                y, z = self.cycle(x, y, z, cache, pos)
        y, z = self.cycle(x, y, z, cache, pos)
        q = self.q_head(y if cfg.causal else y[:, 0])[..., 0] if self.q_head is not None else None
        return self.lm_head(y[:, P:]), q, y.detach(), z.detach()

    def supervision_steps(self, idx, n_sup=None, puzzle_ids=None):
        """Inference: yield (logits, q_logits) after every supervision step."""
        y = z = None
        for _ in range(n_sup or self.n_sup):
            logits, q, y, z = self(idx, y, z, puzzle_ids=puzzle_ids)
            yield logits, q

    # ---- generation ----------------------------------------------------------

    @property
    def sites_per_step(self):  # attention sites of one supervision step (cache entries per step)
        cfg = self.config
        return cfg.n_layer * (cfg.T_recursion * (cfg.n_loops + 1) if cfg.recursion else 1)

    @torch.no_grad()
    def decode(self, idx, cache, pos, n_sup, halt_threshold=1.0, step=None):
        """Run the recursion over new tokens idx [B, L] at positions pos.., writing their keys/values
        into the cache (None: no cache, idx is the whole context). A row stops its supervision steps
        once sigmoid(q) at its last token exceeds halt_threshold (1.0: never); the keys/values of the
        steps it skipped are copied from its last computed step, so later tokens can attend to it.
        step: what runs one supervision step (default self.forward; generate passes a compiled one).
        Returns the last token's logits [B, V] and the steps each row used [B]."""
        cfg, (B, L), dev = self.config, idx.shape, idx.device
        n, step, sites = self.sites_per_step, step or self, lambda s: None
        if cache is not None:
            if pos + L > cfg.block_size:
                raise ValueError(f"positions {pos}..{pos + L - 1} do not fit block_size {cfg.block_size}")
            if cache.k is None:  # in the dtype attention will produce (autocast's, if on)
                dtype = torch.get_autocast_dtype(dev.type) if torch.is_autocast_enabled(dev.type) else self.lm_head.weight.dtype
                cache.allocate(n_sup * n, (B, cfg.n_kv_head, cfg.block_size, cfg.n_embd // cfg.n_head), dtype, dev)
            if len(cache.k) < n_sup * n or cache.k[0].size(0) != B:
                raise ValueError(f"this cache holds {len(cache.k) // n} steps of batch {cache.k[0].size(0)}, "
                                 f"not {n_sup} of batch {B}: start a new KVCache()")
            positions = cache.slots[pos:pos + L]  # a token sees the slots up to its own (causal) or every written one
            mask = cache.causal[pos:pos + L] if cfg.causal else (cache.slots < pos + L).expand(L, -1)
            sites = lambda s: cache.step(s, n, positions, mask)
        y = z = None
        if self.q_head is None or halt_threshold >= 1.0:  # every row runs every step: no bookkeeping, no syncs
            for s in range(n_sup):
                logits, _, y, z = step(idx, y, z, sites(s))
            return logits[:, -1], torch.full((B,), n_sup, dtype=torch.long)
        last = torch.zeros(B, dtype=torch.long)  # the last step each row computed
        done = torch.zeros(B, dtype=torch.bool)
        for s in range(n_sup):
            step_logits, q, y, z = step(idx, y, z, sites(s))
            running = ~done
            logits = step_logits[:, -1] if s == 0 else torch.where(running.to(dev)[:, None], step_logits[:, -1], logits)
            last[running] = s
            done |= (torch.sigmoid(q[:, -1].float()) > halt_threshold).cpu()
            if done.all():
                break
        for s in range(1, n_sup if cache is not None else 0):  # fill the sites of the steps a row skipped
            for r in (last < s).nonzero().flatten().tolist():
                src = last[r].item() * n
                for j in range(n):
                    for kv in (cache.k, cache.v):
                        kv[s * n + j][r, :, pos:pos + L] = kv[src + j][r, :, pos:pos + L]
        return logits, last + 1

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, n_sup=None, halt_threshold=1.0,
                 use_cache=True, compile=False):
        """Sample max_new_tokens after idx [B, T] (temperature 0: greedy). Returns the extended idx
        and the supervision steps behind each new token [B, max_new_tokens].

        The context is a window of at most block_size tokens. When a new token would overflow it,
        the window slides to its last block_size // 2 tokens and the cache is refilled from them, so
        every distribution equals a full recomputation over the current window (use_cache=False
        recomputes it for every token, for reference and benchmarks). compile: torch.compile the
        supervision step (one-token steps with the cache, whole windows without; prefills run eager)."""
        n_sup = n_sup or self.n_sup
        block = self.config.block_size
        step = _compiled_step(self, use_cache) if compile else None
        # without halting, a cached token is one compiled call: every supervision step and the sampling
        fused = _compiled_token() if compile and use_cache and (self.q_head is None or halt_threshold >= 1.0) else None
        start = max(0, idx.size(1) - block)  # first position of the window
        cache, steps, idx_next = None, [], None
        for _ in range(max_new_tokens):
            if idx.size(1) - start > block:
                start, cache = idx.size(1) - block // 2, None
            if not use_cache:
                logits, used = self.decode(idx[:, start:], None, 0, n_sup, halt_threshold, step)
            elif cache is None:  # prefill the window in one pass (every token runs all steps)
                cache = KVCache()
                logits, used = self.decode(idx[:, start:], cache, 0, n_sup)
            elif fused is not None:
                p = idx.size(1) - 1 - start
                idx_next = fused(self, idx_next, cache, cache.slots[p:p + 1], cache.causal[p:p + 1], n_sup,
                                 temperature, top_k)
                idx = torch.cat([idx, idx_next], dim=1)
                steps.append(torch.full((idx.size(0),), n_sup, dtype=torch.long))
                continue
            else:
                logits, used = self.decode(idx_next, cache, idx.size(1) - 1 - start, n_sup, halt_threshold, step)
            idx_next = sample_token(logits, temperature, top_k)
            idx = torch.cat([idx, idx_next], dim=1)
            steps.append(used)
        return idx, torch.stack(steps, dim=1)

    # ---- bookkeeping -------------------------------------------------------

    def get_num_params(self, non_embedding=True):
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and not self.config.tie_weights:
            n -= self.wte.weight.numel()
        return n

    def flops_per_token(self, seq_len=None):
        """Training FLOPs per input token (block_size of them per sequence; seq_len: another length),
        counting every net call of the recursion: the T-1 no-grad cycles forward only (1x), the last
        cycle and the heads forward + backward (3x). Matmul FLOPs only (norms, rope, softmax ignored);
        attention as nanoGPT/PaLM count it (QK^T and AV over the whole sequence, causal or not). The net
        also runs over a puzzle prefix; the output head reads the tokens only; a per-sequence q-head
        (bidirectional models) reads one position."""
        cfg = self.config
        L = seq_len or cfg.block_size
        P = L + cfg.prefix_len  # positions the net runs over
        block_mm = sum(m.weight.numel() for m in self.blocks.modules() if isinstance(m, nn.Linear))
        attn = 2 * 2 * cfg.n_layer * P * cfg.n_embd       # per position: QK^T and AV
        if cfg.mixer == 'mlp_t':  # its weights act on each of the n_embd columns of a sequence: n_embd / P per position
            mlp_t = sum(b.mlp_t.c_fc.weight.numel() + b.mlp_t.c_proj.weight.numel() for b in self.blocks)
            block_mm, attn = block_mm - mlp_t + mlp_t * cfg.n_embd / P, 0
        net_fwd = (2 * block_mm + attn) * P / L
        head_fwd = 2 * self.lm_head.weight.numel()
        if self.q_head is not None:
            head_fwd += 2 * self.q_head.weight.numel() / (1 if cfg.causal else L)
        if not cfg.recursion:
            return 3 * (net_fwd + head_fwd)
        calls = cfg.n_loops + 1
        per_step = (cfg.T_recursion - 1) * calls * net_fwd + 3 * calls * net_fwd + 3 * head_fwd
        return cfg.n_sup * per_step

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type, puzzle_emb_lr=None,
                             puzzle_emb_weight_decay=None):
        """AdamW: decay on matrices and embeddings, not on norms, biases, y/z inits; the puzzle
        embedding in its own group (TRM trains it with a larger learning rate)."""
        decay, no_decay, puzzle = [], [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                (puzzle if name == 'puzzle_emb.weight' else
                 no_decay if p.dim() < 2 or name == 'yz_init' else decay).append(p)
        groups = [{'params': decay, 'weight_decay': weight_decay}, {'params': no_decay, 'weight_decay': 0.0}]
        if puzzle:
            groups.append({'params': puzzle, 'lr_scale': (puzzle_emb_lr or learning_rate) / learning_rate,  # follows the schedule
                           'weight_decay': weight_decay if puzzle_emb_weight_decay is None else puzzle_emb_weight_decay})
        fused = 'fused' in inspect.signature(torch.optim.AdamW).parameters and device_type in ('cuda', 'cpu')
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=fused or None)


# the official TRM code's parameter names (models/recursive_reasoning/trm.py) -> ours
OFFICIAL_TRM_NAMES = [
    (r'embed_tokens\.embedding_weight', 'wte.weight'),
    (r'lm_head\.weight', 'lm_head.weight'),
    (r'q_head\.(weight|bias)', r'q_head.\1'),
    (r'puzzle_emb\.weights', 'puzzle_emb.weight'),
    (r'L_level\.layers\.(\d+)\.self_attn\.qkv_proj\.weight', r'blocks.\1.attn.c_attn.weight'),
    (r'L_level\.layers\.(\d+)\.self_attn\.o_proj\.weight', r'blocks.\1.attn.c_proj.weight'),
    (r'L_level\.layers\.(\d+)\.(mlp|mlp_t)\.gate_up_proj\.weight', r'blocks.\1.\2.c_fc.weight'),
    (r'L_level\.layers\.(\d+)\.(mlp|mlp_t)\.down_proj\.weight', r'blocks.\1.\2.c_proj.weight'),
]


def from_official_trm(state_dict, model):
    """Our state dict for `model` (a trm_faithful GPT) from a state dict saved by the official TRM code
    (prefixes such as _orig_mod. and model.inner. are dropped). ValueError naming any official tensor
    that has no place here, any of ours left without a value, and any shape that differs."""
    import re
    ours, out, unmapped = model.state_dict(), {}, []
    official = {re.sub(r'^(_orig_mod\.)?(model\.)?(inner\.)?', '', k): v for k, v in state_dict.items()}
    init = {k: official.pop(k) for k in ('H_init', 'L_init') if k in official}
    if len(init) == 2:
        out['yz_init'] = torch.stack([init['H_init'], init['L_init']])  # y is TRM's z_H, z its z_L
    for name, tensor in official.items():
        for pattern, target in OFFICIAL_TRM_NAMES:
            if re.fullmatch(pattern, name):
                out[re.sub(pattern, target, name)] = tensor
                break
        else:
            unmapped.append(name)
    problems = [f"unmapped {n}" for n in unmapped] + [f"missing {n}" for n in ours if n not in out]
    problems += [f"no place for {n}" for n in out if n not in ours]
    problems += [f"{n}: official {tuple(t.shape)} vs ours {tuple(ours[n].shape)}" for n, t in out.items()
                 if n in ours and t.shape != ours[n].shape]
    if problems:
        raise ValueError("the official TRM state dict does not fit this config: " + "; ".join(problems[:8]))
    return {n: t.to(ours[n].dtype) for n, t in out.items()}


def sample_token(logits, temperature, top_k=None):
    """The next token per row [B, 1] from logits [B, V]: greedy at temperature 0, else a sample of
    softmax(logits / temperature) restricted to the top_k. Gumbel-max (argmax of the logits plus Gumbel
    noise draws exactly from the softmax) rather than multinomial, so that it compiles into the step."""
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -float('inf'))
    gumbel = -torch.log(-torch.log(torch.rand_like(logits)))
    return (logits + gumbel).argmax(-1, keepdim=True)


# generate(compile=True) compiles a whole cached token (all supervision steps and the sampling, when
# nothing halts) or else one supervision step. Separate functions, so separate dynamo caches: one-token
# steps over the preallocated cache have fixed shapes (dynamic=False: one graph, no recompiles), while
# recomputed windows grow by a token every step (dynamic=True). A token is a few dozen tiny kernels, so
# the C++ wrapper (no Python between kernels) matters here, and so does decompose_mm_pass: on the CPU it
# turns a one-row matmul (batch 1 decoding) into a multiply-and-sum that inductor fuses with its
# neighbours, where a call into the BLAS costs more than the arithmetic (1.25x per cached token, measured).
_compile_options = {'cpp_wrapper': True, 'post_grad_fusion_options': {'decompose_mm_pass': {}}}


def _cached_step(model, idx, y, z, cache):
    return model(idx, y, z, cache)


def _window_step(model, idx, y, z, cache):
    return model(idx, y, z, cache)


def _cached_token(model, idx, cache, positions, mask, n_sup, temperature, top_k):
    # one new token per row at the cache slots `positions`, all steps, no halting -> the next token
    y = z = None
    for s in range(n_sup):
        logits, _, y, z = model(idx, y, z, cache.step(s, model.sites_per_step, positions, mask))
    return sample_token(logits[:, -1], temperature, top_k)


_compiled = {}


def _compiled_token():
    if 'token' not in _compiled:
        _compiled['token'] = torch.compile(_cached_token, dynamic=False, options=_compile_options)
    return _compiled['token']


def _compiled_step(model, use_cache):
    if use_cache not in _compiled:
        fn = _cached_step if use_cache else _window_step
        _compiled[use_cache] = torch.compile(fn, dynamic=not use_cache, options=_compile_options)
    return functools.partial(_compiled[use_cache], model)


def data_model_args(config):
    """(task, GPTConfig arguments) of a train.py config dict: its model keys plus what the data in
    data/<dataset> fixes. task 'control' (meta.json with a horizon): feature/output widths, one position
    per horizon step; 'puzzle' (other meta.json): vocabulary, sequence length, puzzle ids (ARC: one per
    augmentation); 'lm': a char-level meta.pkl's vocabulary, else GPT-2's 50257 padded to 50304."""
    data_dir = os.path.join('data', config['dataset'])
    args = {k: config[k] for k in GPTConfig.keys() if k in config}
    if os.path.exists(os.path.join(data_dir, 'meta.json')):
        with open(os.path.join(data_dir, 'meta.json')) as f:
            meta = json.load(f)
        if 'horizon' in meta:
            return 'control', dict(args, vocab_size=0, block_size=meta['horizon'], causal=False,
                                   n_features=meta['n_features'], n_outputs=meta['n_control'])
        n_aug = config['arc_n_aug'] if meta['augmentation'] == 'arc' else 1
        return 'puzzle', dict(args, vocab_size=meta['vocab_size'], block_size=meta['seq_len'], causal=False,
                              num_puzzle_ids=meta.get('num_puzzle_ids', 1) * n_aug)
    vocab_size = 50304  # multiples of 64: faster matmuls
    if os.path.exists(os.path.join(data_dir, 'meta.pkl')):
        with open(os.path.join(data_dir, 'meta.pkl'), 'rb') as f:
            meta = pickle.load(f)
        if meta.get('tokenizer') != 'gpt2':  # char-level vocabularies are used as they are
            vocab_size = meta['vocab_size']
    return 'lm', dict(args, vocab_size=vocab_size, causal=True)


def load_model(ckpt_path, device='cpu', use_ema=True):
    """(model in eval mode, checkpoint dict) from a train.py checkpoint; the EMA weights when
    use_ema and the run kept them. FileNotFoundError with a hint when there is none."""
    if not os.path.exists(ckpt_path):
        raise FileNotFoundError(f"{ckpt_path} not found; train first (python train.py --out_dir={os.path.dirname(ckpt_path)})")
    ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
    model = GPT(GPTConfig(**ckpt['model_args']))
    model.load_state_dict(ckpt['ema']['model'] if use_ema and ckpt.get('ema') else ckpt['model'])
    return model.eval().to(device), ckpt
