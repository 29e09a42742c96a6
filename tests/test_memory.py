"""Tests of memory.py: the gated read and the surprise-gated write, by hand."""
import torch
import torch.nn as nn

from test_model import build


def test_memory_read_is_gated_by_its_certainty():
    # a uniform read over the slots (entropy log M) adds nothing; a read that picks one slot adds its value
    m = build(memory_slots=4, n_head=1, n_kv_head=1)
    mem = m.memory
    h = torch.randn(2, 5, 32, dtype=torch.float64)
    with torch.no_grad():
        mem.c_q.weight.zero_()  # every query 0: p uniform, certainty 0
        assert torch.equal(mem(h), torch.zeros_like(h))
        mem.c_q.weight.copy_(torch.eye(32))
        mem.c_proj.weight.copy_(torch.eye(32))
        mem.keys.zero_()
        mem.keys[2] = 1e3 * h[0, 0] / h[0, 0].norm()  # slot 2 matches token (0, 0) only, by far
    out = mem(h)
    torch.testing.assert_close(out[0, 0], mem.values[2].detach(), rtol=1e-6, atol=1e-6)
    assert (out.norm(dim=-1) <= mem.values.norm(dim=-1).max() + 1e-9).all()  # gated: no read exceeds a value


def test_memory_write_moves_the_slot_the_query_reads_most_by_rate():
    # Memory.write by hand: each token over the threshold, in order, moves the one slot its read query
    # c_q(h) attends to most (summed over heads) toward (query, value) by rate; the rest stay
    m = build(memory_slots=4, n_head=2, n_kv_head=2)
    mem = m.memory
    g = torch.Generator().manual_seed(5)
    h, v = torch.randn(3, 32, generator=g, dtype=torch.float64), torch.randn(3, 32, generator=g, dtype=torch.float64)
    h[2] = h[0]  # the same query again: it sees the first write
    keys, values = mem.keys.detach().clone(), mem.values.detach().clone()
    slots = mem.write(h, v, torch.tensor([2.0, 0.5, 3.0]), threshold=1.0, rate=0.3)
    assert slots[1] == -1  # under the threshold: no write
    for i in (0, 2):
        q = h[i] @ mem.c_q.weight.detach().T
        p = torch.softmax((keys.view(4, 2, 16) * q.view(2, 16)).sum(-1) / 4.0, dim=0)  # [slots, heads]
        j = int(p.sum(1).argmax())
        assert slots[i] == j
        keys[j] = 0.7 * keys[j] + 0.3 * q
        values[j] = 0.7 * values[j] + 0.3 * v[i]
    assert slots[0] == slots[2]
    torch.testing.assert_close(mem.keys.detach(), keys, rtol=0, atol=1e-12)
    torch.testing.assert_close(mem.values.detach(), values, rtol=0, atol=1e-12)
    assert isinstance(mem.keys, nn.Parameter) and mem.keys.grad is None  # no graph, still the model's parameter
