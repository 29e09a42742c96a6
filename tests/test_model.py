"""Tests of model.py: shapes, attention and the plain decoder against independent
references, gradient truth of the recursion, causality, boundedness, bookkeeping.

CPU only, tiny configs; exact comparisons run in float64.
"""
import math
from contextlib import nullcontext

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import model as M
from model import GPT, GPTConfig, HaltedKV


def tiny(**kw):
    base = dict(block_size=32, vocab_size=37, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)
    base.update(kw)
    return GPTConfig(**base)


def build(seed=0, double=True, randomize=True, **kw):
    torch.manual_seed(seed)
    m = GPT(tiny(**kw))
    if randomize:
        randomize_(m, seed)
    return m.double() if double else m


@torch.no_grad()
def randomize_(module, seed=0):
    """O(1) random weights everywhere (norm gains != 1, q_head != 0), so that every
    parameter matters and a wrong index or a missing term shows."""
    g = torch.Generator().manual_seed(1000 + seed)
    for name, p in module.named_parameters():
        if p.dim() == 1:  # norm gains, biases
            base = 1.0 if 'norm' in name else 0.0
            p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
        elif name.endswith('wte.weight'):
            p.copy_(torch.randn(p.shape, generator=g))
        else:
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))


# ---------------------------------------------------------------- references

def exact_angles(head_dim, length, theta=10000.0):
    """[length, head_dim/2] float64 RoPE angles pos * theta^(-2i/d)."""
    i = torch.arange(head_dim // 2, dtype=torch.float64)
    inv_freq = theta ** (-2.0 * i / head_dim)
    return torch.arange(length, dtype=torch.float64)[:, None] * inv_freq[None, :]


def rotation_matrices(head_dim, length, theta=10000.0):
    """Explicit [length, hd, hd] rotations, rotate-half convention: dimension i is
    paired with i + hd/2 and the pair is rotated by angle pos * theta^(-2i/hd)."""
    ang = exact_angles(head_dim, length, theta)
    h = head_dim // 2
    R = torch.zeros(length, head_dim, head_dim, dtype=torch.float64)
    for i in range(h):
        c, s = ang[:, i].cos(), ang[:, i].sin()
        R[:, i, i], R[:, i, i + h] = c, -s
        R[:, i + h, i], R[:, i + h, i + h] = s, c
    return R


def exact_rope_tables(head_dim, length, theta=10000.0):
    """float64 cos/sin in the layout model.apply_rope expects: [length, 1, hd]."""
    ang = exact_angles(head_dim, length, theta)
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos()[:, None], ang.sin()[:, None]


def set_exact_rope_(m):
    """Replace the model's float32-accurate rope tables by float64-accurate ones."""
    cfg = m.config
    cos, sin = exact_rope_tables(cfg.n_embd // cfg.n_head, cfg.block_size, cfg.rope_theta)
    m.rope_cos, m.rope_sin = cos[:, 0], sin[:, 0]


def ref_attention(h, w_qkv, w_o, n_head, n_kv_head, causal=True, theta=10000.0, b_qkv=None, b_o=None,
                  kv_expand='repeat_interleave'):
    """Textbook attention: q/k/v projections, explicit RoPE rotation, softmax(QK^T/sqrt(d)) V."""
    B, L, D = h.shape
    hd = D // n_head
    qkv = h @ w_qkv.T + (0 if b_qkv is None else b_qkv)
    q = qkv[..., :n_head * hd].reshape(B, L, n_head, hd)
    k = qkv[..., n_head * hd:(n_head + n_kv_head) * hd].reshape(B, L, n_kv_head, hd)
    v = qkv[..., (n_head + n_kv_head) * hd:].reshape(B, L, n_kv_head, hd)
    R = rotation_matrices(hd, L, theta).to(h.dtype)
    q = torch.einsum('lij,blhj->blhi', R, q)
    k = torch.einsum('lij,blhj->blhi', R, k)
    rep = n_head // n_kv_head
    if kv_expand == 'repeat_interleave':  # query head j uses kv head j // rep
        k, v = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2)
    else:  # a wrong grouping (j uses kv head j % n_kv_head), to show the test can tell
        k, v = k.repeat(1, 1, rep, 1), v.repeat(1, 1, rep, 1)
    scores = torch.einsum('bihd,bjhd->bhij', q, k) / math.sqrt(hd)
    if causal:
        mask = torch.ones(L, L, dtype=torch.bool).tril()
        scores = scores.masked_fill(~mask, float('-inf'))
    att = scores.softmax(dim=-1)
    out = torch.einsum('bhij,bjhd->bihd', att, v).reshape(B, L, D)
    return out @ w_o.T + (0 if b_o is None else b_o)


def rmsnorm(x, w, eps):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def ref_llama(sd, cfg, idx, tie):
    """A straightforward Llama-style decoder computed from a state_dict."""
    x = sd['wte.weight'][idx]
    for i in range(cfg.n_layer):
        p = f'blocks.{i}.'
        a = rmsnorm(x, sd[p + 'norm1.weight'], cfg.norm_eps)
        x = x + ref_attention(a, sd[p + 'attn.c_attn.weight'], sd[p + 'attn.c_proj.weight'],
                              cfg.n_head, cfg.n_kv_head, causal=True, theta=cfg.rope_theta)
        m = rmsnorm(x, sd[p + 'norm2.weight'], cfg.norm_eps)
        w_fc = sd[p + 'mlp.c_fc.weight']
        hidden = w_fc.shape[0] // 2
        w1, w3, w2 = w_fc[:hidden], w_fc[hidden:], sd[p + 'mlp.c_proj.weight']  # c_fc packs [gate, up]
        x = x + (F.silu(m @ w1.T) * (m @ w3.T)) @ w2.T
    x = rmsnorm(x, sd['norm_f.weight'], cfg.norm_eps)
    head = sd['wte.weight'] if tie else sd['lm_head.weight']
    return x @ head.T


def ref_step(m, idx, y=None, z=None, truncated=True):
    """One supervision step written out: the first T-1 cycles under no_grad (or not,
    with truncated=False), the last cycle with grad, then the heads."""
    cfg = m.config
    x = m.wte(idx)
    if y is None:
        B, L = idx.shape
        y, z = m.yz_init[0].expand(B, L, -1), m.yz_init[1].expand(B, L, -1)

    def cycle(y, z):
        for _ in range(cfg.n_loops):
            z = m.net(z, x + y)
        y = m.net(y, z)
        return y, z

    with torch.no_grad() if truncated else nullcontext():
        for _ in range(cfg.T_recursion - 1):
            y, z = cycle(y, z)
    y, z = cycle(y, z)
    q = m.q_head(y).squeeze(-1) if m.q_head is not None else None
    return m.lm_head(y), q, y, z


def step_loss(logits, q, targets, q_targets):
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
    return loss + F.binary_cross_entropy_with_logits(q, q_targets)


def grads(m):
    return {n: (None if p.grad is None else p.grad.clone()) for n, p in m.named_parameters()}


def assert_grads_close(g1, g2, rtol=1e-10, atol=1e-12):
    assert g1.keys() == g2.keys()
    for n in g1:
        if g1[n] is None or g2[n] is None:
            assert g1[n] is None and g2[n] is None, n
        else:
            torch.testing.assert_close(g1[n], g2[n], rtol=rtol, atol=atol, msg=n)


# ---------------------------------------------------------------- 1. shapes and dtypes

@pytest.mark.parametrize('n_kv_head', [4, 2, 1])
@pytest.mark.parametrize('act', [True, False])
def test_shapes_and_dtypes(n_kv_head, act):
    torch.manual_seed(0)
    B, L, V, D = 3, 10, 37, 32
    idx = torch.randint(0, V, (B, L))
    m = GPT(tiny(n_kv_head=n_kv_head, act=act, n_sup=2, T_recursion=2, n_loops=2))
    logits, q, y, z = m(idx)
    assert logits.shape == (B, L, V) and logits.dtype == torch.float32
    assert y.shape == z.shape == (B, L, D) and y.dtype == z.dtype == torch.float32
    if act:
        assert q.shape == (B, L) and q.dtype == torch.float32
    else:
        assert q is None and m.q_head is None
    # states feed back in
    logits2, _, y2, z2 = m(idx, y, z)
    assert logits2.shape == (B, L, V) and y2.shape == (B, L, D)
    assert not torch.equal(y2, y)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        logits, q, y, z = m(idx)
    assert logits.dtype == torch.bfloat16 and logits.shape == (B, L, V)
    assert torch.isfinite(logits.float()).all()
    assert y.shape == (B, L, D)
    if act:
        assert q.shape == (B, L)
    with pytest.raises(ValueError, match='block_size'):
        m(torch.zeros(1, 33, dtype=torch.long))


@pytest.mark.parametrize('n_kv_head', [4, 2])
def test_shapes_recursion_off(n_kv_head):
    torch.manual_seed(0)
    m = GPT(tiny(n_kv_head=n_kv_head, recursion=False, norm_position='pre'))
    assert m.q_head is None and not hasattr(m, 'yz_init') and m.n_sup == 1
    idx = torch.randint(0, 37, (2, 9))
    logits, q, y, z = m(idx)
    assert logits.shape == (2, 9, 37) and logits.dtype == torch.float32
    assert q is None and y is None and z is None
    with torch.autocast('cpu', dtype=torch.bfloat16):
        logits, _, _, _ = m(idx)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()


# ---------------------------------------------------------------- 2. attention

def test_rope_tables_match_float64_formula():
    hd, L = 16, 64
    cos, sin = M.rope_tables(hd, L, 10000.0)
    ref_cos, ref_sin = exact_rope_tables(hd, L)
    assert cos.shape == (L, hd)
    # float32 tables: angles up to L rad, so ~1e-5 absolute is what float32 gives
    torch.testing.assert_close(cos.double(), ref_cos[:, 0], rtol=0, atol=2e-5)
    torch.testing.assert_close(sin.double(), ref_sin[:, 0], rtol=0, atol=2e-5)


def test_apply_rope_is_rotate_half_rotation():
    torch.manual_seed(0)
    hd, L = 8, 12
    x = torch.randn(2, L, 3, hd, dtype=torch.float64)
    cos, sin = exact_rope_tables(hd, L)
    R = rotation_matrices(hd, L)
    out = M.apply_rope(x, cos, sin)
    torch.testing.assert_close(out, torch.einsum('lij,blhj->blhi', R, x), rtol=0, atol=1e-13)
    # a rotation: norms per head are preserved; relative: <R_m q, R_n k> depends on m - n only
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1), rtol=0, atol=1e-12)
    q, k = torch.randn(hd, dtype=torch.float64), torch.randn(hd, dtype=torch.float64)
    qs = M.apply_rope(q.expand(1, L, 1, hd), cos, sin)[0, :, 0]
    ks = M.apply_rope(k.expand(1, L, 1, hd), cos, sin)[0, :, 0]
    torch.testing.assert_close(qs[5] @ ks[2], qs[9] @ ks[6], rtol=0, atol=1e-12)


@pytest.mark.parametrize('n_head,n_kv_head', [(4, 4), (4, 2), (4, 1), (6, 3)])
@pytest.mark.parametrize('causal', [True, False])
@pytest.mark.parametrize('bias', [False, True])
def test_attention_matches_reference(n_head, n_kv_head, causal, bias):
    torch.manual_seed(0)
    D, L = 8 * n_head, 11
    cfg = tiny(n_head=n_head, n_kv_head=n_kv_head, n_embd=D, causal=causal, bias=bias)
    attn = M.Attention(cfg)
    randomize_(attn)
    attn = attn.double()
    assert attn.c_attn.weight.shape == ((n_head + 2 * n_kv_head) * 8, D)
    h = torch.randn(2, L, D, dtype=torch.float64)
    cos, sin = exact_rope_tables(8, L)
    out = attn(h, cos, sin)
    ref = ref_attention(h, attn.c_attn.weight, attn.c_proj.weight, n_head, n_kv_head, causal=causal,
                        b_qkv=attn.c_attn.bias, b_o=attn.c_proj.bias)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    if n_kv_head not in (1, n_head):  # the grouping is checked, not just the shapes
        wrong = ref_attention(h, attn.c_attn.weight, attn.c_proj.weight, n_head, n_kv_head, causal=causal,
                              b_qkv=attn.c_attn.bias, b_o=attn.c_proj.bias, kv_expand='tile')
        assert (out - wrong).abs().max() > 1e-3


# ---------------------------------------------------------------- 3. recursion off = Llama decoder

@pytest.mark.parametrize('tie', [False, True])
def test_recursion_off_is_llama_decoder(tie):
    m = build(recursion=False, norm_position='pre', norm='rmsnorm', mlp='swiglu', tie_weights=tie,
              n_layer=3, n_head=4, n_kv_head=2)
    cfg = m.config
    assert cfg.hidden_dim == 96  # 32 * ceil(2/3 * 4 * 32 / 32)
    if tie:
        assert m.lm_head.weight is m.wte.weight
    torch.manual_seed(1)
    idx = torch.randint(0, cfg.vocab_size, (2, 13))
    sd = m.state_dict()
    ref = ref_llama(sd, cfg, idx, tie)
    with torch.no_grad():
        # as built: rope tables are computed in float32, so ~1e-6 agreement in float64
        logits, _, _, _ = m(idx)
        torch.testing.assert_close(logits, ref, rtol=0, atol=1e-4)
        # with float64-accurate rope tables, the decoder agrees to rounding error
        set_exact_rope_(m)
        logits, _, _, _ = m(idx)
    assert logits.abs().max() > 0.5  # not a degenerate comparison
    torch.testing.assert_close(logits, ref, rtol=0, atol=1e-10)


# ---------------------------------------------------------------- 4. gradient truth

GRAD_CFG = dict(T_recursion=3, n_loops=2, n_sup=1, n_layer=2, n_head=4, n_kv_head=2, block_size=16)


def _data(m, B=2, L=8, seed=3):
    g = torch.Generator().manual_seed(seed)
    V = m.config.vocab_size
    idx = torch.randint(0, V, (B, L), generator=g)
    targets = torch.randint(0, V, (B, L), generator=g)
    q_targets = torch.randint(0, 2, (B, L), generator=g).double()
    return idx, targets, q_targets


@pytest.mark.parametrize('norm_position', ['post', 'pre'])
def test_gradients_flow_through_last_cycle_only(norm_position):
    m = build(norm_position=norm_position, **GRAD_CFG)
    idx, targets, q_targets = _data(m)

    logits, q, y, z = m(idx)
    step_loss(logits, q, targets, q_targets).backward()
    g_model = grads(m)

    m.zero_grad(set_to_none=True)
    r_logits, r_q, r_y, r_z = ref_step(m, idx, truncated=True)
    step_loss(r_logits, r_q, targets, q_targets).backward()
    g_ref = grads(m)

    torch.testing.assert_close(logits, r_logits, rtol=0, atol=1e-12)
    torch.testing.assert_close(q, r_q, rtol=0, atol=1e-12)
    torch.testing.assert_close(y, r_y.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(z, r_z.detach(), rtol=0, atol=1e-12)
    assert all(g is not None for g in g_model.values())  # every parameter is used by the last cycle
    assert_grads_close(g_model, g_ref)

    # full backprop through all T cycles gives the same forward but different gradients
    m.zero_grad(set_to_none=True)
    f_logits, f_q, _, _ = ref_step(m, idx, truncated=False)
    step_loss(f_logits, f_q, targets, q_targets).backward()
    g_full = grads(m)
    torch.testing.assert_close(f_logits, logits, rtol=0, atol=1e-12)
    rel = max(((g_full[n] - g_model[n]).norm() / g_model[n].norm()).item()
              for n in g_model if 'blocks' in n)
    assert rel > 1e-3, rel


@pytest.mark.parametrize('T', [1, 3])
def test_returned_state_is_detached_and_next_step_is_independent(T):
    m = build(learnable_inits=True, **{**GRAD_CFG, 'T_recursion': T})
    idx, targets, q_targets = _data(m)

    logits, q, y1, z1 = m(idx)
    assert not y1.requires_grad and not z1.requires_grad
    assert y1.grad_fn is None and z1.grad_fn is None
    step_loss(logits, q, targets, q_targets).backward()  # frees step 1's graph
    init_grad_1 = m.yz_init.grad
    if T == 1:  # step 1 does reach the inits, so step 2 reaching them would show
        assert init_grad_1 is not None and init_grad_1.abs().min() > 0
    m.zero_grad(set_to_none=True)

    logits2, q2, y2, z2 = m(idx, y1, z1)
    step_loss(logits2, q2, targets, q_targets).backward()  # would raise if it reached step 1's graph
    g2 = grads(m)
    assert g2['yz_init'] is None  # nothing of step 2 flows back into step 1

    m.zero_grad(set_to_none=True)
    r_logits, r_q, _, _ = ref_step(m, idx, y1.detach().clone(), z1.detach().clone())
    step_loss(r_logits, r_q, targets, q_targets).backward()
    torch.testing.assert_close(logits2, r_logits, rtol=0, atol=1e-12)
    assert_grads_close(g2, grads(m))


@pytest.mark.parametrize('norm_position', ['post', 'pre'])
def test_separate_nets_with_equal_stacks_are_the_shared_net(norm_position):
    # blocks_y a copy of blocks: the same logits, q and states as the shared net, and its gradient split
    # between the two stacks (the z updates' part in blocks, the y updates' in blocks_y)
    shared = build(norm_position=norm_position, **GRAD_CFG)
    separate = build(separate_nets=True, norm_position=norm_position, **GRAD_CFG)
    sd = shared.state_dict()
    separate.load_state_dict(dict(sd, **{'blocks_y.' + k[7:]: v for k, v in sd.items() if k.startswith('blocks.')}))
    idx, targets, q_targets = _data(shared)
    outs = []
    for m in (shared, separate):
        logits, q, y, z = m(idx)
        step_loss(logits, q, targets, q_targets).backward()
        outs.append((logits, q, y, z))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    g_shared, g_sep = grads(shared), grads(separate)
    assert all(g is not None for g in g_sep.values())  # both stacks are used by the last cycle
    for n, g in g_shared.items():
        expect = g_sep[n] + g_sep['blocks_y.' + n[7:]] if n.startswith('blocks.') else g_sep[n]
        torch.testing.assert_close(g, expect, rtol=1e-10, atol=1e-12, msg=n)


def test_separate_nets_update_z_with_blocks_and_y_with_blocks_y():
    # one cycle of one loop from the inits: z = blocks(z0, x + y0) does not see blocks_y; y = blocks_y(y0, z) does
    m = build(separate_nets=True, n_loops=1, T_recursion=1, n_sup=1)
    idx = torch.randint(0, 37, (2, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, _, y, z = m(idx)
        for stack, z_changes in (('blocks_y', False), ('blocks', True)):
            saved = {n: p.clone() for n, p in m.named_parameters()}
            for n, p in m.named_parameters():
                if n.startswith(stack + '.'):
                    p.mul_(1.5)
            _, _, y2, z2 = m(idx)
            assert (z2 - z).abs().max() > 1e-6 if z_changes else torch.equal(z2, z), stack
            assert (y2 - y).abs().max() > 1e-6, stack
            for n, p in m.named_parameters():
                p.copy_(saved[n])
    # the y stack is initialised as the shared one, with its own draws
    fresh = GPT(tiny(separate_nets=True, n_layer=4))
    assert abs(fresh.blocks_y[0].mlp.c_fc.weight.std().item() - 0.02) < 0.002
    assert abs(fresh.blocks_y[0].attn.c_proj.weight.std().item() - 0.02 / math.sqrt(8)) < 0.001
    assert not torch.equal(fresh.blocks_y[0].mlp.c_fc.weight, fresh.blocks[0].mlp.c_fc.weight)
    faithful = GPT(tiny(separate_nets=True, trm_faithful=True))  # and as the official code would: LeCun normal
    assert abs(faithful.blocks_y[0].mlp.c_fc.weight.std().item() - 1 / math.sqrt(32)) < 0.01


# ---------------------------------------------------------------- 5. causality

CAUSAL_CFG = dict(n_sup=3, T_recursion=2, n_loops=2, n_head=4, n_kv_head=2)


@pytest.mark.parametrize('norm_position', ['post', 'pre'])
def test_recursive_model_is_causal_at_every_step(norm_position):
    m = build(causal=True, norm_position=norm_position, **CAUSAL_CFG)
    g = torch.Generator().manual_seed(0)
    L = 12
    idx = torch.randint(0, 37, (1, L), generator=g)
    with torch.no_grad():
        base = list(m.supervision_steps(idx))
        assert len(base) == 3
        for t in (0, 4, L - 1):
            idx2 = idx.clone()
            idx2[0, t] = (idx[0, t] + 1) % 37
            for s, ((l1, q1), (l2, q2)) in enumerate(zip(base, m.supervision_steps(idx2))):
                torch.testing.assert_close(l2[:, :t], l1[:, :t], rtol=0, atol=1e-12, msg=f'step {s}, t={t}')
                torch.testing.assert_close(q2[:, :t], q1[:, :t], rtol=0, atol=1e-12, msg=f'step {s}, t={t}')
                assert (l2[:, t] - l1[:, t]).abs().max() > 1e-6  # position t itself does change


def test_bidirectional_model_sees_later_tokens():
    m = build(causal=False, **CAUSAL_CFG)
    idx = torch.randint(0, 37, (1, 12), generator=torch.Generator().manual_seed(0))
    idx2 = idx.clone()
    idx2[0, -1] = (idx[0, -1] + 1) % 37
    with torch.no_grad():
        for (l1, q1), (l2, q2) in zip(m.supervision_steps(idx), m.supervision_steps(idx2)):
            assert (l2[:, 0] - l1[:, 0]).abs().max() > 1e-6
            assert q1.shape == (1,)  # bidirectional: one halting logit per sequence
            assert (q2 - q1).abs().max() > 1e-9


# ---------------------------------------------------------------- 6. boundedness

PRESETS = {  # (n_loops, T_recursion, n_sup, n_head, n_kv_head, causal)
    'A': (3, 2, 8, 4, 2, True),
    'puzzle': (6, 3, 16, 8, 8, False),
}


@pytest.mark.parametrize('preset', list(PRESETS))
@pytest.mark.parametrize('norm_position', ['post', 'pre'])
@pytest.mark.parametrize('scale', [1.0, 3.0])
def test_states_stay_bounded_over_full_recursion(preset, norm_position, scale):
    n_loops, T, n_sup, nh, nkv, causal = PRESETS[preset]
    torch.manual_seed(0)
    m = GPT(tiny(n_embd=64, n_layer=2, n_head=nh, n_kv_head=nkv, causal=causal, n_loops=n_loops,
                 T_recursion=T, n_sup=n_sup, norm_position=norm_position))
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(scale)
        m.yz_init.mul_(scale)
    idx = torch.randint(0, 37, (2, 16))
    y = z = None
    with torch.no_grad():
        for s in range(n_sup):
            logits, q, y, z = m(idx, y, z)
            for name, state in (('y', y), ('z', z)):
                assert torch.isfinite(state).all(), (name, s)
                rms = state.pow(2).mean(-1).sqrt()
                assert rms.max() < 10, (name, s, rms.max().item())
                assert rms.min() > 0.1, (name, s, rms.min().item())  # nor does it collapse
            assert torch.isfinite(logits).all() and torch.isfinite(q).all()


# ---------------------------------------------------------------- 7. parameter count

def _hand_count(cfg, learnable=False):
    D, hd, H = cfg.n_embd, cfg.n_embd // cfg.n_head, cfg.hidden_dim
    per_layer = D * (cfg.n_head + 2 * cfg.n_kv_head) * hd + D * D + D * 2 * H + H * D + 2 * D
    n = (2 if cfg.separate_nets else 1) * cfg.n_layer * per_layer + cfg.vocab_size * D * (1 if cfg.tie_weights else 2)
    n += D if cfg.norm_position == 'pre' else 0
    n += D + 1 if cfg.recursion and cfg.act else 0
    n += 2 * D if learnable else 0
    n += 2 * cfg.memory_slots * D + 2 * D * D if cfg.memory_slots else 0  # keys, values; query and output projections
    return n


@pytest.mark.parametrize('tie', [False, True])
@pytest.mark.parametrize('kw', [dict(), dict(recursion=False, norm_position='pre'),
                                dict(learnable_inits=True), dict(act=False, norm_position='pre'),
                                dict(separate_nets=True), dict(memory_slots=8, memory_read_y=True)])
def test_num_params(tie, kw):
    m = GPT(tiny(tie_weights=tie, **kw))
    all_params = [p for _, p in m.named_parameters(remove_duplicate=False)]
    unique = {id(p): p for p in all_params}
    total = sum(p.numel() for p in unique.values())
    assert m.get_num_params(non_embedding=False) == total == _hand_count(m.config, kw.get('learnable_inits', False))
    emb = 37 * 32
    if tie:
        assert sum(p.numel() for p in all_params) == total + emb  # counted once
        assert m.get_num_params(non_embedding=True) == total
    else:
        assert m.get_num_params(non_embedding=True) == total - emb


@pytest.mark.parametrize('kw', [dict(), dict(mixer='mlp_t', causal=False), dict(norm_position='pre', tie_weights=True)])
def test_separate_nets_add_one_stack_of_parameters_and_no_flops(kw):
    shared, separate = GPT(tiny(**kw)), GPT(tiny(separate_nets=True, **kw))
    stack = sum(p.numel() for p in shared.blocks.parameters())
    assert sum(p.numel() for p in separate.blocks_y.parameters()) == stack
    for non_embedding in (True, False):
        assert separate.get_num_params(non_embedding) == shared.get_num_params(non_embedding) + stack
    assert separate.flops_per_token() == shared.flops_per_token()  # the same calls, of stacks of the same size
    assert shared.blocks_y is None and not any(k.startswith('blocks_y') for k in shared.state_dict())


def test_tied_count_is_untied_minus_one_embedding():
    a, b = GPT(tiny(tie_weights=False)), GPT(tiny(tie_weights=True))
    assert a.get_num_params(False) - b.get_num_params(False) == 37 * 32


# ---------------------------------------------------------------- 8. FLOPs

FL = dict(block_size=32, vocab_size=50, n_layer=2, n_head=4, n_kv_head=2, n_embd=64)
# by hand for FL: hd 16, hidden 32 * ceil(2 * 4 * 64 / 3 / 32) = 192
BLOCK_MM = 2 * (64 * (4 + 2 * 2) * 16 + 64 * 64 + 64 * 2 * 192 + 192 * 64)   # = 98304
HEAD = 50 * 64


def test_flops_plain():
    m = GPT(GPTConfig(**FL, recursion=False, norm_position='pre'))
    assert m.config.hidden_dim == 192 and BLOCK_MM == 98304
    assert BLOCK_MM == sum(mod.weight.numel() for mod in m.blocks.modules() if isinstance(mod, nn.Linear))
    N = BLOCK_MM + HEAD
    assert m.flops_per_token() == 6 * N + 12 * 2 * 32 * 64
    assert m.flops_per_token(seq_len=10) == 6 * N + 12 * 2 * 10 * 64
    # tying the head changes parameters, not matmuls
    assert GPT(GPTConfig(**FL, recursion=False, norm_position='pre', tie_weights=True)).flops_per_token() \
        == m.flops_per_token()


@pytest.mark.parametrize('act', [True, False])
def test_flops_recursive(act):
    def flops(**kw):
        return GPT(GPTConfig(**FL, act=act, **kw)).flops_per_token()

    L = 32
    net_fwd = 2 * BLOCK_MM + 4 * 2 * L * 64
    head_fwd = 2 * HEAD + (2 * 64 if act else 0)
    for n_loops, T, n_sup in [(3, 2, 4), (1, 1, 1), (6, 3, 16)]:
        calls = n_loops + 1
        expected = n_sup * ((T - 1) * calls * net_fwd + 3 * calls * net_fwd + 3 * head_fwd)
        assert flops(n_loops=n_loops, T_recursion=T, n_sup=n_sup) == expected
    base = flops(n_loops=3, T_recursion=2, n_sup=4)
    assert flops(n_loops=3, T_recursion=2, n_sup=8) == 2 * base
    # each extra cycle is forward-only: (n_loops + 1) net calls per step
    assert flops(n_loops=3, T_recursion=3, n_sup=4) - base == 4 * (3 + 1) * net_fwd
    assert base - flops(n_loops=3, T_recursion=1, n_sup=4) == 4 * (3 + 1) * net_fwd
    # the smallest recursion (2 net calls, backward through both) costs more than the plain model
    assert flops(n_loops=1, T_recursion=1, n_sup=1) > GPT(GPTConfig(**FL, recursion=False)).flops_per_token()


@pytest.mark.parametrize('kw', [dict(recursion=False), dict(n_loops=2, T_recursion=2, n_sup=2),
                                dict(n_loops=1, T_recursion=1, n_sup=2, act=False),
                                dict(mixer='mlp_t', causal=False, n_loops=1, T_recursion=2, n_sup=1),
                                dict(causal=False, puzzle_emb_ndim=100, n_loops=1, T_recursion=2, n_sup=1),
                                dict(separate_nets=True, n_loops=2, T_recursion=2, n_sup=2),
                                dict(separate_nets=True, mixer='mlp_t', causal=False, n_loops=1, T_recursion=2, n_sup=1),
                                dict(memory_slots=8, n_loops=2, T_recursion=2, n_sup=2),
                                dict(memory_slots=8, memory_read_y=True, mixer='mlp_t', causal=False, n_loops=1,
                                     T_recursion=2, n_sup=1),
                                dict(memory_slots=8, recursion=False)])
def test_flops_per_token_equals_torch_flop_counter(kw):
    # torch's own count of the matmul FLOPs of a real training iteration (n_sup steps, each with its
    # backward; attention through the math backend, whose matmuls the counter sees) equals
    # flops_per_token() * tokens: no-grad cycles forward only, the last cycle and heads forward + backward
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    m = GPT(GPTConfig(**FL, **kw))
    B, L = 2, m.config.block_size
    idx = torch.randint(0, 50, (B, L))
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        y = z = None
        for _ in range(m.n_sup):
            logits, q, y, z = m(idx, y, z, puzzle_ids=torch.zeros(B, dtype=torch.long))
            loss = F.cross_entropy(logits.flatten(0, 1), idx.flatten())
            if q is not None:
                loss = loss + F.binary_cross_entropy_with_logits(q, torch.zeros_like(q))
            loss.backward()
    assert counter.get_total_flops() == m.flops_per_token() * B * L


# ---------------------------------------------------------------- 9. config validation

@pytest.mark.parametrize('kw,msg', [
    (dict(n_embd=30, n_head=4), 'n_embd=30 must be divisible by n_head=4'),
    (dict(n_head=4, n_kv_head=3), 'n_head=4 must be divisible by n_kv_head=3'),
    (dict(n_embd=12, n_head=4, n_kv_head=4), 'must be even for RoPE'),
    (dict(mlp='relu'), "mlp='relu' is not one of"),
    (dict(norm_position='middle'), "norm_position='middle' is not one of"),
    (dict(n_sup=0), 'n_sup=0: must be >= 1'),
    (dict(n_layer=0), 'n_layer=0: must be >= 1'),
    (dict(n_head=0), 'n_head=0: must be >= 1'),
    (dict(block_size=-1), 'block_size=-1: must be >= 1'),
    (dict(dropout=1.0), r'dropout=1.0: must be in \[0, 1\)'),
    (dict(expansion=0.0), 'expansion=0.0: must be > 0'),
    (dict(separate_nets=True, recursion=False), "separate_nets=True gives the recursion's y update its own blocks: "
                                                "set recursion=True"),
    (dict(memory_slots=-1), 'memory_slots=-1: must be >= 0'),
    (dict(memory_slots=1), 'memory_slots=1: a read over one slot is always certain'),
    (dict(memory_read_y=True), 'memory_read_y=True lets the recursion.s y updates read the memory: set memory_sl'),
    (dict(memory_read_y=True, memory_slots=4, recursion=False), 'memory_read_y=True .*and recursion=True'),
])
def test_config_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        tiny(**kw)


# ---------------------------------------------------------------- 10. learnable inits

def test_learnable_inits_get_gradient_when_T_is_1():
    m = build(learnable_inits=True, T_recursion=1, n_loops=2, n_sup=2)
    assert isinstance(m.yz_init, nn.Parameter)
    assert 'yz_init' in dict(m.named_parameters()) and 'yz_init' not in dict(m.named_buffers())
    idx, targets, q_targets = _data(m)
    logits, q, _, _ = m(idx)
    step_loss(logits, q, targets, q_targets).backward()
    g = m.yz_init.grad
    assert g is not None and g.shape == (2, 32)
    assert g[0].abs().max() > 0 and g[1].abs().max() > 0  # both y_init and z_init learn


def test_fixed_inits_are_a_buffer_in_state_dict():
    m = build(learnable_inits=False, T_recursion=1)
    assert not isinstance(m.yz_init, nn.Parameter)
    assert 'yz_init' in dict(m.named_buffers()) and 'yz_init' not in dict(m.named_parameters())
    sd = m.state_dict()
    assert 'yz_init' in sd and torch.equal(sd['yz_init'], m.yz_init)
    assert 'rope_cos' not in sd  # rope tables are recomputed, not saved
    # a fresh model with another seed gets its inits back from the state_dict
    torch.manual_seed(123)
    other = GPT(tiny(learnable_inits=False, T_recursion=1)).double()
    assert not torch.equal(other.yz_init, m.yz_init)
    other.load_state_dict(sd)
    assert torch.equal(other.yz_init, m.yz_init)


def test_learned_inits_are_not_weight_decayed():
    """configure_optimizers says norms, biases and (learned) y/z inits get no weight decay."""
    m = GPT(tiny(learnable_inits=True))
    opt = m.configure_optimizers(0.1, 1e-3, (0.9, 0.95), 'cpu')
    decay = {id(p) for grp in opt.param_groups if grp['weight_decay'] > 0 for p in grp['params']}
    no_decay = {id(p) for grp in opt.param_groups if grp['weight_decay'] == 0 for p in grp['params']}
    assert id(m.yz_init) in no_decay and id(m.yz_init) not in decay
    assert id(m.wte.weight) in decay
    for blk in m.blocks:
        assert id(blk.norm1.weight) in no_decay and id(blk.attn.c_attn.weight) in decay


# ---------------------------------------------------------------- norms, halting

def test_norm_position_defaults_follow_recursion():
    assert tiny().norm_position == 'post'
    plain = GPT(tiny(recursion=False))
    assert plain.config.norm_position == 'pre' and isinstance(plain.norm_f, nn.RMSNorm)
    assert tiny(recursion=False, norm_position='post').norm_position == 'post'  # ablations may still ask


# ---------------------------------------------------------------- puzzles: mlp_t, puzzle prefix, faithful dtype

def test_puzzle_prefix_and_mlp_t_shapes():
    from model import GPT, GPTConfig
    cfg = GPTConfig(block_size=9, vocab_size=11, n_layer=1, n_head=2, n_kv_head=2, n_embd=16, causal=False,
                    mixer='mlp_t', puzzle_emb_ndim=20, num_puzzle_ids=3, n_loops=1, T_recursion=1, n_sup=2)
    m = GPT(cfg)
    assert cfg.prefix_len == 2 and cfg.seq_len == 11  # 20 numbers take two 16-wide positions
    assert m.blocks[0].mlp_t.c_fc.in_features == 11   # the MLP runs over the sequence, prefix included
    idx, pid = torch.randint(0, 11, (3, 9)), torch.tensor([0, 1, 2])
    logits, q, y, z = m(idx, puzzle_ids=pid)
    assert logits.shape == (3, 9, 11) and q.shape == (3,) and y.shape == (3, 11, 16)
    with torch.no_grad():  # the prefix carries the puzzle id: a new embedding changes the answer
        m.puzzle_emb.weight[1].normal_()
    assert not torch.allclose(m(idx, puzzle_ids=pid)[0][1], logits[1])
    with pytest.raises(ValueError, match='mlp_t'):
        m(idx[:, :8], puzzle_ids=pid)


def test_faithful_states_take_the_autocast_dtype():
    # as the official code's forward dtype: under bf16 autocast the input and the y/z states are bf16
    # (fp32 only inside the norms), so the recursion moves half the bytes; fp32 runs are untouched
    from model import GPT, GPTConfig
    torch.manual_seed(0)
    m = GPT(GPTConfig(block_size=9, vocab_size=11, n_layer=1, n_head=2, n_kv_head=2, n_embd=16, causal=False,
                      mixer='mlp_t', trm_faithful=True, puzzle_emb_ndim=16, n_loops=2, T_recursion=2, n_sup=2))
    idx, pid = torch.randint(0, 11, (3, 9)), torch.zeros(3, dtype=torch.long)
    ref, _, y32, _ = m(idx, puzzle_ids=pid)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        logits, q, y, z = m(idx, puzzle_ids=pid)
        assert y.dtype == z.dtype == torch.bfloat16 and y32.dtype == torch.float32
        logits2, _, y2, _ = m(idx, y.float(), z.float(), puzzle_ids=pid)  # fp32 carries are cast on entry
    assert y2.dtype == torch.bfloat16
    torch.testing.assert_close(logits.float(), ref, atol=0.15, rtol=0.05)


def test_halted_is_q_above_the_logit_of_the_threshold():
    q = torch.tensor([-3.0, -0.1, 0.0, 1e-6, 0.5, 4.0])
    assert M.halted(q).tolist() == [False, False, False, True, True, True]  # 0.5: q > 0, the training rule
    for t in (0.1, 0.3, 0.7, 0.9):
        assert torch.equal(M.halted(q, t), torch.sigmoid(q.double()) > t)
    assert not M.halted(q, 1.0).any() and M.halted(q, 0.0).all()
    assert M.halted(q.bfloat16()).tolist() == M.halted(q).tolist()


def test_init_is_reproducible_and_gives_the_documented_scales():
    torch.manual_seed(0)
    a = GPT(tiny(n_layer=4))
    torch.manual_seed(0)
    b = GPT(tiny(n_layer=4))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert abs(a.wte.weight.std().item() - 1.0) < 0.05  # unit scale, as the y/z states
    assert abs(a.blocks[0].mlp.c_fc.weight.std().item() - 0.02) < 0.002
    assert abs(a.blocks[0].attn.c_proj.weight.std().item() - 0.02 / math.sqrt(8)) < 0.001
    assert (a.q_head.weight == 0).all() and (a.q_head.bias == -5).all()  # starts at "not yet right"


def test_halted_kv_freezes_halted_tokens_and_leaves_running_ones_as_they_were():
    torch.manual_seed(0)
    m = GPT(GPTConfig(block_size=16, vocab_size=37, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, n_loops=2,
                      T_recursion=2, n_sup=2)).double()
    X = torch.randint(0, 37, (2, 12))
    first = HaltedKV()
    _, _, y, z = m(X, None, None, first)
    assert len(first.kv) == 2 * 2 * 3 and not first.kv[0][0].requires_grad  # n_layer x T x (n_loops + 1) sites
    plain_logits = m(X, y, z)[0]
    plain_grads = torch.autograd.grad(plain_logits.sum(), list(m.parameters()), allow_unused=True)
    # every token running: the plain step, gradients included
    logits = m(X, y, z, HaltedKV(torch.ones(2, 12, dtype=torch.bool), first))[0]
    assert torch.equal(logits, plain_logits)
    for g, ref in zip(torch.autograd.grad(logits.sum(), list(m.parameters()), allow_unused=True), plain_grads):
        assert (g is None and ref is None) or torch.equal(g, ref)
    # token 5 of row 0 halted: it shows every site its step-1 keys/values; tokens before it are untouched
    running = torch.ones(2, 12, dtype=torch.bool)
    running[0, 5] = False
    second = HaltedKV(running, first)
    logits = m(X, y, z, second)[0]
    for (k1, v1), (k2, v2) in zip(first.kv, second.kv):
        assert torch.equal(k2[0, :, 5], k1[0, :, 5]) and torch.equal(v2[0, :, 5], v1[0, :, 5])
        assert not torch.equal(k2[0, :, 4], k1[0, :, 4])
    assert torch.equal(logits[1], plain_logits[1]) and torch.equal(logits[0, :5], plain_logits[0, :5])
    assert not torch.allclose(logits[0, 6:], plain_logits[0, 6:])


# ---------------------------------------------------------------- 12. memory

@pytest.mark.parametrize('read_y', [False, True])
def test_memory_is_read_by_every_z_update_and_by_y_updates_when_asked(read_y):
    m = build(memory_slots=4, memory_read_y=read_y, n_loops=3, T_recursion=2, n_sup=2)
    calls = []
    m.memory.register_forward_hook(lambda *a: calls.append(1))
    idx, _, _ = _data(m)
    list(m.supervision_steps(idx))
    assert len(calls) == 2 * 2 * (3 + read_y)  # n_sup x T_recursion x (n_loops z updates + the y update)
    plain = build(memory_slots=4, recursion=False)
    plain.memory.register_forward_hook(lambda *a: calls.append(1))
    plain(idx)
    assert len(calls) == 2 * 2 * (3 + read_y) + 1


def test_memory_trains_in_every_mode():
    # causal LM, a bidirectional mlp_t puzzle model with a puzzle prefix, and a control model (features in,
    # a linear head out): the loss reaches the memory's keys, values and projections
    for kw in (dict(), dict(causal=False, mixer='mlp_t', puzzle_emb_ndim=40),
               dict(causal=False, n_features=3, n_outputs=2)):
        m = build(memory_slots=4, n_loops=2, T_recursion=2, n_sup=1, **kw)
        if kw.get('n_features'):
            out = m(torch.randn(2, 32, 3, dtype=torch.float64))[0]
        else:
            out = m(torch.randint(0, 37, (2, 32)), puzzle_ids=torch.zeros(2, dtype=torch.long))[0]
        out.square().mean().backward()
        for name, p in m.memory.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (kw, name)
