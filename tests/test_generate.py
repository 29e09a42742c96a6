"""Tests of generate.py: the KV cache through the recursion against full recomputation (float64),
window slides, halting, the compiled step, sampling, surprise-gated memory writes."""
import math

import pytest
import torch

from generate import KVCache, compiled_step, consume, decode, generate, sample_token, sites_per_step
from model import GPT, GPTConfig


def last(out):
    """decode's (logits [B, L, V], steps [B, L]) of the last new token."""
    return out[0][:, -1], out[1][:, -1]


def gen_model(**kw):
    torch.manual_seed(0)
    base = dict(block_size=16, vocab_size=37, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
                n_loops=2, T_recursion=2, n_sup=3)
    base.update(kw)
    return GPT(GPTConfig(**base)).double().eval()


@pytest.mark.parametrize('kw', [{}, {'norm_position': 'pre'}, {'recursion': False, 'norm_position': 'pre'},
                                {'separate_nets': True},  # the y updates' sites: the y stack's keys/values
                                {'memory_slots': 4, 'memory_read_y': True}])  # memory reads: nothing to cache
def test_cached_decoding_equals_recomputation(kw):
    m = gen_model(**kw)
    seq = torch.randint(0, 37, (2, 14))
    for n_sup in sorted({1, m.n_sup}):
        cache = KVCache()
        logits, used = last(decode(m, seq[:, :5], cache, 0, n_sup))  # prefill a 5-token prompt in one pass
        for t in range(5, seq.size(1) + 1):
            ref = list(m.supervision_steps(seq[:, :t], n_sup=n_sup))[-1][0][:, -1]
            torch.testing.assert_close(logits, ref, rtol=0, atol=1e-12)
            assert used.tolist() == [n_sup, n_sup]
            if t < seq.size(1):
                logits, used = last(decode(m, seq[:, t:t + 1], cache, t, n_sup))


def test_generation_slides_past_block_size_exactly():
    m = gen_model()
    prompt = torch.randint(0, 37, (2, 6))
    cached, _ = generate(m, prompt, 40, temperature=0)
    recomputed, _ = generate(m, prompt, 40, temperature=0, use_cache=False)
    assert cached.shape == (2, 46) and torch.equal(cached, recomputed)
    # the last token was sampled from a full recomputation over the window it was in (slide to block/2)
    start = 6
    for length in range(6, 45):
        if length + 1 - start > 16:
            start = length + 1 - 8
    logits = list(m.supervision_steps(cached[:, start:45]))[-1][0][:, -1]
    assert torch.equal(logits.argmax(-1), cached[:, 45])


def test_sampling_is_deterministic_for_a_seed():
    m = gen_model()
    prompt = torch.randint(0, 37, (1, 4))
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        outs.append(generate(m, prompt, 20, temperature=1.0, top_k=10)[0])
    assert torch.equal(outs[0], outs[1])


def test_halting_fills_skipped_steps_from_the_last_computed_one():
    m = gen_model()
    cache = KVCache()
    seq = torch.randint(0, 37, (2, 6))
    decode(m, seq[:, :5], cache, 0, 3)
    logits, used = last(decode(m, seq[:, 5:], cache, 5, 3, halt_threshold=0.0))  # sigmoid(q) > 0: halt after step 1
    assert used.tolist() == [1, 1]
    ref = list(m.supervision_steps(seq, n_sup=1))[-1][0][:, -1]
    torch.testing.assert_close(logits, ref, rtol=0, atol=1e-12)
    per_step = sites_per_step(m.config)
    assert len(cache.k) == len(cache.v) == 3 * per_step  # one tensor per site
    assert all(kv.shape == (2, 2, 16, 8) for kv in cache.k + cache.v)  # [B, n_kv_head, block_size, head_dim]
    for j in range(per_step):
        for s in (1, 2):
            for kv in (torch.stack(cache.k), torch.stack(cache.v)):
                assert torch.equal(kv[s * per_step + j, :, :, 5], kv[j, :, :, 5])
                assert not torch.equal(kv[s * per_step + j, :, :, 4], kv[j, :, :, 4])  # earlier tokens keep their own steps


def test_halting_uses_fewer_steps():
    m = gen_model()
    with torch.no_grad():  # a q-head that says "right" for some tokens and not others
        m.q_head.weight.normal_(0, 1.0)
        m.q_head.bias.zero_()
    prompt = torch.randint(0, 37, (3, 4))
    _, full = generate(m, prompt, 30, temperature=0)
    _, steps = generate(m, prompt, 30, temperature=0, halt_threshold=0.5)
    assert (full == 3).all()
    assert steps.min() >= 1 and steps.max() <= 3
    assert steps.sum() < full.sum() and (steps < 3).any() and (steps == 3).any()


def halting_model(**kw):
    """gen_model with a q-head that says "right" for some tokens at some steps and not others."""
    m = gen_model(**kw)
    with torch.no_grad():
        m.q_head.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(1))
        m.q_head.bias.zero_()
    return m


@pytest.mark.parametrize('kw', [{}, {'norm_position': 'pre'}, {'n_kv_head': 4, 'n_loops': 1, 'T_recursion': 3},
                                {'separate_nets': True}, {'memory_slots': 4}])
@pytest.mark.parametrize('threshold', [0.3, 0.5, 0.7])
def test_halting_through_the_cache_equals_recomputing_the_window(kw, threshold):
    # one definition: a token's logits are its halting step's, and later steps see its keys/values of
    # that step. Token by token through the cache == the whole window at once, prompt prefill included
    m = halting_model(**kw)
    seq = torch.randint(0, 37, (2, 16))
    cache = KVCache()
    logits, used = last(decode(m, seq[:, :5], cache, 0, 3, threshold))
    seen = []
    for t in range(5, seq.size(1) + 1):
        ref, ref_used = last(decode(m, seq[:, :t], None, 0, 3, threshold))
        torch.testing.assert_close(logits, ref, rtol=0, atol=1e-9)
        assert torch.equal(used, ref_used)
        seen += used.tolist()
        if t < seq.size(1):
            logits, used = last(decode(m, seq[:, t:t + 1], cache, t, 3, threshold))
    assert len(set(seen)) > 1  # tokens halted at different steps


def test_halting_at_the_first_step_is_the_one_step_model_and_never_halting_the_full_one():
    m = halting_model()
    seq = torch.randint(0, 37, (2, 12))
    for threshold, n_sup in ((0.0, 1), (1.0, 3)):  # sigmoid(q) > 0: every token halts after step 1
        cache = KVCache()
        logits, used = last(decode(m, seq[:, :6], cache, 0, 3, threshold))
        for t in range(6, 12):
            ref = list(m.supervision_steps(seq[:, :t], n_sup=n_sup))[-1][0][:, -1]
            torch.testing.assert_close(logits, ref, rtol=0, atol=1e-12)
            assert used.tolist() == [n_sup, n_sup]
            logits, used = last(decode(m, seq[:, t:t + 1], cache, t, 3, threshold))


def test_generation_with_halting_is_the_same_with_and_without_the_cache():
    m = halting_model()
    prompt = torch.randint(0, 37, (2, 5))
    cached, cached_steps = generate(m, prompt, 40, temperature=0, halt_threshold=0.7)  # slides past 16 twice
    recomputed, recomputed_steps = generate(m, prompt, 40, temperature=0, halt_threshold=0.7, use_cache=False)
    assert torch.equal(cached, recomputed) and torch.equal(cached_steps, recomputed_steps)
    assert len(set(cached_steps.flatten().tolist())) > 1


def test_compiled_cached_step_equals_eager():
    # the compiled one-token step (static shapes over the preallocated cache) against eager decoding
    m = gen_model(n_layer=1, n_loops=1, T_recursion=1, n_sup=2)
    step = compiled_step(m, use_cache=True)
    seq = torch.randint(0, 37, (1, 12))  # batch 1: one-row matmuls, which the compiled step decomposes
    eager, compiled = KVCache(), KVCache()
    decode(m, seq[:, :4], eager, 0, 2)
    decode(m, seq[:, :4], compiled, 0, 2)  # prefills run eager in generate too
    for t in range(4, seq.size(1)):
        ref, _ = last(decode(m, seq[:, t:t + 1], eager, t, 2))
        logits, used = last(decode(m, seq[:, t:t + 1], compiled, t, 2, step=step))
        torch.testing.assert_close(logits, ref, rtol=0, atol=1e-12)
        assert used.tolist() == [2]
    torch.testing.assert_close(compiled.k, eager.k, rtol=0, atol=1e-12)
    # and through generate, sliding past block_size (16) twice
    for B in (1, 2):
        prompt = torch.randint(0, 37, (B, 3))
        assert torch.equal(generate(m, prompt, 30, temperature=0, compile=True)[0], generate(m, prompt, 30, temperature=0)[0])


def test_sample_token_draws_from_the_top_k_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]]).expand(40000, -1)
    counts = torch.bincount(sample_token(logits, 0.7, top_k=3)[:, 0], minlength=5).double() / 40000
    expect = torch.softmax(logits[0, :3].double() / 0.7, -1)
    assert counts[3:].sum() == 0  # outside the top 3: never
    torch.testing.assert_close(counts[:3], expect, rtol=0, atol=0.01)
    assert torch.equal(sample_token(logits[:2], 0), torch.zeros(2, 1, dtype=torch.long))  # greedy


@pytest.mark.parametrize('threshold', [0.3, 0.7])
def test_one_window_gives_every_token_its_halted_logits(threshold):
    # the whole window in one call (model.HaltedKV, as evaluation and bench use it) == token by token
    # through the cache, at every position
    m = halting_model(n_loops=1)
    seq = torch.randint(0, 37, (2, 16))
    ref, ref_used = decode(m, seq, None, 0, 3, threshold)
    cache = KVCache()
    for t in range(16):
        logits, used = decode(m, seq[:, t:t + 1], cache, t, 3, threshold)
        torch.testing.assert_close(logits[:, 0], ref[:, t], rtol=0, atol=1e-9)
        assert torch.equal(used[:, 0], ref_used[:, t])
    assert len(set(ref_used.flatten().tolist())) > 1  # tokens halted at different steps


# ---------------------------------------------------------------- surprise-gated memory writes

@pytest.mark.parametrize('halting', [False, True])
@pytest.mark.parametrize('threshold', [None, 1e9])
def test_memory_writes_off_or_never_triggered_give_the_same_tokens(halting, threshold):
    m = halting_model(memory_slots=4) if halting else gen_model(memory_slots=4)
    kw = dict(halt_threshold=0.5 if halting else 1.0, memory_write_threshold=threshold)
    prompt = torch.randint(0, 37, (2, 5))
    ref, ref_steps = generate(m, prompt, 30, temperature=0, halt_threshold=kw['halt_threshold'])  # slides past 16
    out, steps = generate(m, prompt, 30, temperature=0, **kw)
    assert torch.equal(out, ref) and torch.equal(steps, ref_steps)
    torch.manual_seed(5)
    ref = generate(m, prompt[:1], 30, temperature=1.0, top_k=10, halt_threshold=kw['halt_threshold'])[0]
    torch.manual_seed(5)
    assert torch.equal(generate(m, prompt[:1], 30, temperature=1.0, top_k=10, **kw)[0], ref)


def test_every_token_writes_at_threshold_0_moving_the_slot_its_query_reads_most(monkeypatch):
    m = gen_model(memory_slots=4)
    mem, rate = m.memory, 0.25
    bank = mem.keys.detach().clone(), mem.values.detach().clone()
    calls, write = [], mem.write

    def spy(h, v, surprise, threshold, rate):
        before = mem.keys.detach().clone(), mem.values.detach().clone()
        slots = write(h, v, surprise, threshold, rate)
        calls.append((h, v, surprise, before, (mem.keys.detach().clone(), mem.values.detach().clone()), slots))
        return slots
    monkeypatch.setattr(mem, 'write', spy)
    prompt = torch.randint(0, 37, (1, 5))
    out, _ = generate(m, prompt, 20, temperature=0, memory_write_threshold=0.0, memory_write_rate=rate)
    assert len(calls) == 4 + 19  # every consumed token but the first (nothing predicted it) and the last sampled
    prev = bank
    for h, v, surprise, before, after, slots in calls:
        assert all(torch.equal(a, b) for a, b in zip(before, prev))  # the bank carries from token to token
        q = h.reshape(32) @ mem.c_q.weight.detach().T  # the read query, in the keys' space
        p = torch.softmax((before[0].view(4, 4, 8) * q.view(4, 8)).sum(-1) / math.sqrt(8), dim=0)  # [slot, head]
        j = int(p.sum(1).argmax())
        assert slots.tolist() == [[j]]
        torch.testing.assert_close(after[0][j], (1 - rate) * before[0][j] + rate * q, rtol=0, atol=1e-12)
        torch.testing.assert_close(after[1][j], (1 - rate) * before[1][j] + rate * v.reshape(32), rtol=0, atol=1e-12)
        rest = [i for i in range(4) if i != j]
        assert torch.equal(after[0][rest], before[0][rest]) and torch.equal(after[1][rest], before[1][rest])
        prev = after
    assert not torch.equal(prev[0], bank[0])
    assert torch.equal(mem.keys, bank[0]) and torch.equal(mem.values, bank[1])  # restored
    # the first write (prompt token 1, before any write): its surprise under position 0's prediction, its
    # last memory read's input and its answer y, against a recomputation of the first two tokens
    reads = []
    hook = mem.register_forward_hook(lambda mod, args, o: reads.append(args[0]))
    y = z = None
    for _ in range(m.n_sup):
        logits, _, y, z = m(prompt[:, :2], y, z)
    hook.remove()
    h, v, surprise = calls[0][:3]
    nll = -torch.log_softmax(logits[0, 0], -1)[prompt[0, 1]]
    torch.testing.assert_close(surprise[0, 0].double(), nll, rtol=0, atol=1e-5)  # in float32, as sampling reads logits
    torch.testing.assert_close(h[0, 0], reads[-1][0, 1], rtol=0, atol=1e-12)
    torch.testing.assert_close(v[0, 0], y[0, 1], rtol=0, atol=1e-12)


def test_a_write_changes_the_memory_for_later_tokens_only():
    m = gen_model(memory_slots=4)
    seq = torch.randint(0, 37, (1, 8))
    ref, _ = decode(m, seq, None, 0, m.n_sup)
    logits, _ = consume(m, seq, KVCache(), 0, m.n_sup, 1.0, None, 0.0, 0.5)  # token 1 writes first
    torch.testing.assert_close(logits[:, :2], ref[:, :2], rtol=0, atol=1e-12)
    assert (logits[0, 2:] - ref[0, 2:]).abs().amax(-1).min() > 1e-6  # every later token reads the changed bank


def test_memory_writes_leave_the_model_unchanged_and_repeat_for_a_seed():
    m = halting_model(memory_slots=4)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    prompt = torch.randint(0, 37, (2, 4))
    kw = dict(memory_write_threshold=0.0, memory_write_rate=0.5, halt_threshold=0.5)
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        outs.append(generate(m, prompt, 20, temperature=1.0, **kw))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())
    batch = generate(m, prompt, 20, temperature=0, **kw)  # rows run on their own, each from the model's bank
    for b in range(2):
        row = generate(m, prompt[b:b + 1], 20, temperature=0, **kw)
        assert torch.equal(batch[0][b:b + 1], row[0]) and torch.equal(batch[1][b:b + 1], row[1])
    for model, kw, needle in ((gen_model(), {}, 'memory_slots=0'), (m, {'use_cache': False}, 'use_cache=True'),
                              (m, {'compile': True}, 'compile=False')):
        with pytest.raises(ValueError, match=needle):
            generate(model, prompt, 3, memory_write_threshold=1.0, **kw)
