import torch

from grokfast import GrokFast


def test_filter_matches_a_hand_computation_over_three_steps():
    model = torch.nn.Linear(2, 1, bias=False)
    model.unused = torch.nn.Parameter(torch.zeros(3))  # no gradient: left alone
    f = GrokFast(alpha=0.9, lamb=2.0)
    # the EMA starts at the first gradient (the paper's code), then e = 0.9 e + 0.1 g; the step takes g + 2 e
    grads = [[1.0, -2.0], [3.0, 0.5], [-1.0, 4.0]]
    emas = [[1.0, -2.0], [1.2, -1.75], [0.98, -1.175]]
    filtered = [[3.0, -6.0], [5.4, -3.0], [0.96, 1.65]]
    for g, e, out in zip(grads, emas, filtered):
        model.weight.grad = torch.tensor([g])
        assert f.step(model)
        torch.testing.assert_close(f.ema['weight'], torch.tensor([e]))
        torch.testing.assert_close(model.weight.grad, torch.tensor([out]))
    assert set(f.ema) == {'weight'} and model.unused.grad is None
    # a non-finite step (train.py skips it) leaves the EMA as it was
    model.weight.grad = torch.tensor([[float('inf'), 0.0]])
    assert not f.step(model)
    torch.testing.assert_close(f.ema['weight'], torch.tensor([emas[-1]]))


def test_state_round_trips_by_parameter_name():
    model = torch.nn.Linear(3, 2)
    a = GrokFast(alpha=0.5, lamb=1.0)
    for i in range(2):
        for p in model.parameters():
            p.grad = torch.full_like(p, float(i + 1))
        a.step(model)
    b = GrokFast(alpha=0.5, lamb=1.0)
    b.load_state_dict({n: t.clone() for n, t in a.state_dict().items()}, model)
    for f in (a, b):
        for p in model.parameters():
            p.grad = torch.full_like(p, 3.0)
        f.step(model)
    assert a.ema.keys() == b.ema.keys() == {'weight', 'bias'}
    assert all(torch.equal(a.ema[n], b.ema[n]) for n in a.ema)
