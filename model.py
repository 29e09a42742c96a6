"""
nanoTRM model: one small stack of transformer blocks applied recursively (TRM).

    x    = embed(idx)
    y, z = y_init, z_init
    for s in 1..n_sup:                        # deep supervision: one forward() each
        for c in 1..T_recursion:              # all but the last cycle under no_grad
            for i in 1..n_loops:
                z = net(z, x + y)             # latent reasoning sees the input
            y = net(y, z)                     # answer update does not (separate_nets: its own blocks)
        logits_s, q_s = head(y), q_head(y)
        y, z = y.detach(), z.detach()

memory_slots > 0: every z update's net (and y's, memory_read_y) first reads a learned bank of slots.
With recursion=False the same blocks form a plain pre-norm Llama-style decoder:
logits = head(final_norm(blocks(x))).
"""
import inspect
import math
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from memory import Memory


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
    separate_nets: bool = False   # the y update gets its own n_layer blocks (HRM's H and L modules), z keeps `blocks`
    memory_slots: int = 0         # > 0: a learned bank of key/value slots each net call reads (see Memory); 0 = off
    memory_read_y: bool = False   # the y updates read it too (z updates always do)
    yz_init_from: str = ''        # 'ckpt:PATH' | 'hf:PATH': y_init/z_init per example from a frozen LM (condition.py)
    yz_init_pool: str = 'mean'    # mean | attention: how the frozen LM's states of an input become one vector
    token_text: str = ''          # the task's text form: one character per token id (what the frozen LM reads)

    def __post_init__(self):
        if not self.norm_position:
            self.norm_position = 'post' if self.recursion else 'pre'
        for key in ('block_size', 'n_layer', 'n_head', 'n_kv_head', 'n_embd', 'n_loops', 'T_recursion',
                    'n_sup', 'num_puzzle_ids'):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)!r}: must be >= 1")
        for key in ('vocab_size', 'puzzle_emb_ndim', 'puzzle_emb_len', 'n_features', 'n_outputs', 'memory_slots'):
            if getattr(self, key) < 0:
                raise ValueError(f"{key}={getattr(self, key)!r}: must be >= 0")
        for key in ('expansion', 'norm_eps', 'rope_theta'):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key}={getattr(self, key)!r}: must be > 0")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout!r}: must be in [0, 1)")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if self.n_head % self.n_kv_head != 0:
            raise ValueError(f"n_head={self.n_head} must be divisible by n_kv_head={self.n_kv_head}")
        if (self.n_embd // self.n_head) % 2 != 0:
            raise ValueError(f"head size n_embd/n_head={self.n_embd // self.n_head} must be even for RoPE")
        for key, allowed in (('mlp', ('swiglu', 'gelu', 'silu')), ('norm', ('rmsnorm', 'layernorm')),
                             ('norm_position', ('post', 'pre')), ('mixer', ('attention', 'mlp_t')),
                             ('yz_init_pool', ('mean', 'attention'))):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key}={getattr(self, key)!r} is not one of {allowed}")
        if self.mixer == 'mlp_t' and self.causal:
            raise ValueError("mixer='mlp_t' mixes every position with every other: set causal=False")
        if self.separate_nets and not self.recursion:
            raise ValueError("separate_nets=True gives the recursion's y update its own blocks: set recursion=True")
        if self.memory_slots == 1:
            raise ValueError("memory_slots=1: a read over one slot is always certain (its gate needs >= 2); "
                             "set memory_slots >= 2, or 0 for no memory")
        if self.memory_read_y and not (self.memory_slots and self.recursion):
            raise ValueError("memory_read_y=True lets the recursion's y updates read the memory: set memory_slots >= 2 "
                             "and recursion=True")
        if self.yz_init_from and not self.recursion:
            raise ValueError("yz_init_from conditions the recursion's y/z initial states: set recursion=True")
        if self.yz_init_from and len(self.token_text) != self.vocab_size:
            raise ValueError(f"yz_init_from needs the text form of the task's {self.vocab_size} tokens (token_text, "
                             f"{len(self.token_text)} characters given): the puzzle tasks supply it")

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
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head
        self.head_dim = config.n_embd // config.n_head
        self.c_attn = nn.Linear(config.n_embd, (config.n_head + 2 * config.n_kv_head) * self.head_dim, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.causal = config.causal
        self.dropout = config.dropout

    def forward(self, h, cos, sin, cache=None):
        B, L, _ = h.shape
        qkv = self.c_attn(h).view(B, L, self.n_head + 2 * self.n_kv_head, self.head_dim)
        # rope on q and k together, in the contiguous [B, L, heads, hd] layout (elementwise ops run fastest there)
        qk = apply_rope(qkv[:, :, :self.n_head + self.n_kv_head], cos.to(qkv.dtype), sin.to(qkv.dtype))
        q, k = qk.split([self.n_head, self.n_kv_head], dim=2)
        v = qkv[:, :, self.n_head + self.n_kv_head:]
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        is_causal = self.causal and L > 1
        if cache is not None:  # decoding or halting: this site's keys/values, and a mask when they are not L x L
            k, v, mask = cache(k, v)
            is_causal = is_causal and mask is None
        else:
            mask = None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                             dropout_p=self.dropout if self.training else 0.0,
                                             enable_gqa=self.n_kv_head != self.n_head)
        return self.c_proj(out.transpose(1, 2).reshape(B, L, -1))


class MLP(nn.Module):
    def __init__(self, config, size=None):
        super().__init__()
        self.kind = config.mlp
        size = size or config.n_embd
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
            self.mlp_t = MLP(config, config.seq_len)
            self.norm1 = make_norm(config, config.seq_len)
        else:
            self.attn = Attention(config)
            self.norm1 = make_norm(config)
        self.mlp = MLP(config)
        self.norm2 = make_norm(config)
        self.drop = nn.Dropout(config.dropout)

    def sublayer(self, h, f, norm):
        if self.post:  # TRM: h = norm(h + f(h)) keeps every state at unit scale
            return norm(h + self.drop(f(h)))
        return h + self.drop(f(norm(h)))

    def forward(self, h, cos, sin, cache=None):
        if hasattr(self, 'mlp_t'):  # transposed to [B, D, L]: the MLP and its norm run over the sequence
            h = self.sublayer(h.transpose(1, 2), self.mlp_t, self.norm1).transpose(1, 2)
        else:
            h = self.sublayer(h, lambda a: self.attn(a, cos, sin, cache), self.norm1)
        return self.sublayer(h, self.mlp, self.norm2)


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        # inputs: tokens, or per-step feature vectors (control); a puzzle embedding may lead the sequence
        if config.n_features:
            self.wte = nn.Linear(config.n_features, config.n_embd)
        else:
            self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        if config.puzzle_emb_ndim:
            self.puzzle_emb = nn.Embedding(config.num_puzzle_ids, config.puzzle_emb_ndim)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.blocks_y = nn.ModuleList([Block(config) for _ in range(config.n_layer)]) if config.separate_nets else None
        self.memory = Memory(config) if config.memory_slots else None
        self.cond = None
        if config.yz_init_from:
            from condition import Conditioner  # loads the frozen model; transformers only for 'hf:'
            self.cond = Conditioner(config)
        # pre-norm needs a final norm: it ends the plain GPT and keeps recursive states bounded
        self.norm_f = make_norm(config) if config.norm_position == 'pre' else nn.Identity()
        self.lm_head = nn.Linear(config.n_embd, config.n_outputs or config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight
        # the official TRM q-head has a second ("continue") logit that its default training ignores
        self.q_head = None
        if config.recursion and config.act:
            self.q_head = nn.Linear(config.n_embd, 2 if config.trm_faithful else 1)
        if config.recursion:
            inits = trunc_normal(torch.empty(2, config.n_embd), 1.0)  # y_init, z_init (TRM's H_init, L_init)
            if config.learnable_inits:
                self.yz_init = nn.Parameter(inits)
            else:
                self.register_buffer('yz_init', inits)
        cos, sin = rope_tables(config.n_embd // config.n_head, config.seq_len, config.rope_theta)
        self.register_buffer('rope_cos', cos, persistent=False)
        self.register_buffer('rope_sin', sin, persistent=False)
        self.init_weights()

    def init_weights(self):
        """Every weight's initial value, in this order (it decides which random numbers each one gets):
        1. matrices and embeddings N(0, 0.02), biases 0 (GPT-2);
        2. residual projections (c_proj) N(0, 0.02 / sqrt(2 n_layer)) (GPT-2's scaled init);
        3. the input embedding at unit scale, like the y/z states it is added to (a linear embedding of
           features: std 1/sqrt(n_features), unit scale for unit-scale features), unless tied to the head;
        4. trm_faithful: all of 1-3 replaced by the official code's truncated LeCun normal (embeddings
           1/sqrt(n_embd), scaled back up in embed);
        5. the puzzle embedding at 0 (a new puzzle starts from nothing), and the q-head predicting
           "not yet right" (TRM);
        6. the memory's keys and values at unit scale, like the states that read them."""
        cfg = self.config
        linears = [m for m in self.modules() if isinstance(m, (nn.Linear, nn.Embedding))]
        for m in linears:
            torch.nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                torch.nn.init.zeros_(m.bias)
        for name, p in self.named_parameters():
            if name.endswith('c_proj.weight'):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
        if not cfg.tie_weights:
            std = 1.0 / math.sqrt(cfg.n_features) if cfg.n_features else 1.0
            torch.nn.init.normal_(self.wte.weight, mean=0.0, std=std)
        if cfg.trm_faithful:
            for m in linears:
                fan_in = m.weight.size(1) if isinstance(m, nn.Linear) else cfg.n_embd
                trunc_normal(m.weight, 1.0 / math.sqrt(fan_in))
        if cfg.puzzle_emb_ndim:
            torch.nn.init.zeros_(self.puzzle_emb.weight)
        if self.q_head is not None:
            torch.nn.init.zeros_(self.q_head.weight)
            torch.nn.init.constant_(self.q_head.bias, -5.0)
        if self.memory is not None:
            trunc_normal(self.memory.keys, 1.0)
            trunc_normal(self.memory.values, 1.0)

    @property
    def n_sup(self):
        return self.config.n_sup if self.config.recursion else 1

    def net(self, h, inj=None, cache=None, pos=0, blocks=None, read=True):
        """A block stack over h + inj: `blocks` (default: the one stack every call of the recursion shares;
        with separate_nets the y update passes its own), after a read of the memory (if any and read).
        pos: position of h's first token."""
        rows = getattr(cache, 'positions', None)  # a KVCache's slots of the new tokens
        rows = slice(pos, pos + h.size(1)) if rows is None else rows
        cos, sin = self.rope_cos[rows, None], self.rope_sin[rows, None]
        if inj is not None:
            h = h + inj
        if self.memory is not None and read:
            h = h + self.memory(h)
        for block in self.blocks if blocks is None else blocks:
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

    def initial_state(self, idx, L):
        """(y, z) [B, L, D] to start from: the fixed inits, plus the frozen LM's conditioning (yz_init_from)."""
        y_init, z_init = self.yz_init
        if self.cond is None:
            return y_init.expand(idx.size(0), L, -1), z_init.expand(idx.size(0), L, -1)
        dy, dz = self.cond(idx)
        return (y_init + dy)[:, None].expand(-1, L, -1), (z_init + dz)[:, None].expand(-1, L, -1)

    def cycle(self, x, y, z, cache=None, pos=0):
        for _ in range(self.config.n_loops):
            z = self.net(z, x + y, cache, pos)
        y = self.net(y, z, cache, pos, self.blocks_y, self.config.memory_read_y)  # blocks_y: None unless separate_nets
        return y, z

    def forward(self, idx, y=None, z=None, cache=None, pos=0, puzzle_ids=None, restart=None):
        """One supervision step: (logits, q_logits, y, z). Only this step's last cycle carries a graph,
        and the returned y, z are detached, so the caller can backward right away and feed y, z to the
        next step. cache: a generate.KVCache when decoding, a HaltedKV under per-token halting; pos: the
        position of idx's first token; y None: every row starts from the initial state, restart [B] bool:
        the rows that do (a new example in a row in flight).
        q_logits: per token [B, L] when causal (LM), per sequence [B] otherwise (puzzles, control)."""
        cfg = self.config
        if pos + idx.size(1) > cfg.block_size or (cfg.mixer == 'mlp_t' and idx.size(1) != cfg.block_size):
            raise ValueError(f"sequence length {pos + idx.size(1)} does not fit block_size {cfg.block_size}"
                             + (" (mlp_t needs exactly block_size)" if cfg.mixer == 'mlp_t' else ""))
        x = self.embed(idx, puzzle_ids)
        prefix = cfg.prefix_len  # outputs are read after the puzzle prefix
        if not cfg.recursion:
            return self.lm_head(self.net(x, None, cache, pos)[:, prefix:]), None, None, None
        if y is None or restart is not None:
            y0, z0 = self.initial_state(idx, x.size(1))
            y, z = (y0, z0) if y is None else (torch.where(restart[:, None, None], y0, y),
                                                torch.where(restart[:, None, None], z0, z))
        if cfg.trm_faithful:
            y, z = y.to(x.dtype), z.to(x.dtype)
        y_in, z_in = y, z
        with torch.no_grad():
            for _ in range(cfg.T_recursion - 1):
                y, z = self.cycle(x, y, z, cache, pos)
        if self.cond is not None and cfg.T_recursion > 1:  # the no-grad cycles would cut the conditioning's
            y = y + (y_in - y_in.detach())                 # gradient: pass it through them unchanged (a
            z = z + (z_in - z_in.detach())                 # straight-through estimate; values are untouched)
        y, z = self.cycle(x, y, z, cache, pos)
        q = None
        if self.q_head is not None:  # per token (causal), else per sequence, read at the first position
            q = self.q_head(y if cfg.causal else y[:, 0])[..., 0]
        return self.lm_head(y[:, prefix:]), q, y.detach(), z.detach()

    def supervision_steps(self, idx, n_sup=None, puzzle_ids=None, next_input=None):
        """Inference: yield (logits, q_logits) after every supervision step. next_input(idx, logits): the
        next step's inputs (control's rollout feedback), else idx throughout."""
        y = z = None
        for _ in range(n_sup or self.n_sup):
            logits, q, y, z = self(idx, y, z, puzzle_ids=puzzle_ids)
            yield logits, q
            if next_input is not None:
                idx = next_input(idx, logits)

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
        (bidirectional models) reads one position. separate_nets adds parameters, not FLOPs: the same
        calls, the y updates through a second stack of the same size. A memory read counts once per reading call."""
        cfg = self.config
        L = seq_len or cfg.block_size
        n_pos = L + cfg.prefix_len  # positions the net runs over
        block_mm = sum(m.weight.numel() for m in self.blocks.modules() if isinstance(m, nn.Linear))
        attn = 2 * 2 * cfg.n_layer * n_pos * cfg.n_embd       # per position: QK^T and AV
        if cfg.mixer == 'mlp_t':  # its weights act on each of the n_embd columns of a sequence: n_embd / n_pos per position
            mlp_t = sum(b.mlp_t.c_fc.weight.numel() + b.mlp_t.c_proj.weight.numel() for b in self.blocks)
            block_mm, attn = block_mm - mlp_t + mlp_t * cfg.n_embd / n_pos, 0
        net_fwd = (2 * block_mm + attn) * n_pos / L
        head_fwd = 2 * self.lm_head.weight.numel()
        if self.q_head is not None:
            head_fwd += 2 * self.q_head.weight.numel() / (1 if cfg.causal else L)
        read_fwd = 0  # a memory read per position: its two projections, the scores and the weighted sum
        if self.memory is not None:
            read_fwd = 2 * (self.memory.c_q.weight.numel() + self.memory.c_proj.weight.numel()
                            + 2 * self.memory.keys.numel()) * n_pos / L
        if not cfg.recursion:
            return 3 * (net_fwd + read_fwd + head_fwd)
        calls = cfg.n_loops + 1
        cycle_fwd = calls * net_fwd + (cfg.n_loops + cfg.memory_read_y) * read_fwd
        return cfg.n_sup * ((cfg.T_recursion - 1) * cycle_fwd + 3 * cycle_fwd + 3 * head_fwd)

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


def halted(q, threshold=0.5):
    """The halting rule, for training, evaluation and decoding alike: a token (LM) or sequence (puzzles,
    control) halts once the q-head's probability that its answer is already right, sigmoid(q), exceeds
    threshold, i.e. q > logit(threshold). 0.5 (q > 0) is what training and evaluation use; 1.0 never halts.

    Per-token halting in a causal model, the one definition that training (halt_train), evaluation, decoding
    and bench implement: token i halts after the first step h_i at which halted(q_i) (else n_sup). Its
    logits are those of step h_i, and at every attention site of a later step s > h_i its keys/values are
    the ones it had at the same site of step h_i, so later tokens attend to its halted state (HaltedKV over
    a whole window, generate.KVCache token by token)."""
    if threshold >= 1.0:
        bound = math.inf
    elif threshold <= 0.0:
        bound = -math.inf
    else:
        bound = math.log(threshold) - math.log1p(-threshold)
    return q.float() > bound


def keep_halted(new, old, running):
    """A site's keys or values [B, heads, L, hd] under halting: the new ones of the running tokens [B, L],
    the old ones (their halting step's) of the others."""
    return torch.where(running[:, None, :, None], new, old.to(new.dtype))


class HaltedKV:
    """The attention sites of one supervision step over a whole window (training, evaluation, recomputed
    decoding) under per-token halting (see halted): tokens not running show the keys/values they had at
    the same site of the previous step. It records this step's (detached: each step is its own graph) for
    the next: HaltedKV(running, previous step's HaltedKV), or HaltedKV() for a first step."""

    def __init__(self, running=None, prev=None):
        self.running = running  # [B, L]: the tokens that have not halted (None: all)
        self.prev = prev.kv if prev is not None else None
        self.kv = []            # per site, in the order forward() visits them

    def __call__(self, k, v):
        if self.running is not None:
            prev_k, prev_v = self.prev[len(self.kv)]
            k, v = keep_halted(k, prev_k, self.running), keep_halted(v, prev_v, self.running)
        self.kv.append((k.detach(), v.detach()))
        return k, v, None  # no mask: plain causal attention
