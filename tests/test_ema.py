import torch
import torch.nn as nn

from ema import EMA


def test_ema_follows_the_warmed_up_decay():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = EMA(model, decay=0.9)
    expected = [p.detach().clone() for p in model.parameters()]
    for t in range(30):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(5, 3))  # moves the BatchNorm running stats (buffers are copied, not averaged)
        d = min(0.9, (1 + t) / (10 + t))
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, model.parameters())]
        ema.update(model)
    for e, got in zip(expected, ema.model.parameters()):
        torch.testing.assert_close(got, e, rtol=1e-6, atol=1e-6)
    assert torch.equal(ema.model[1].running_mean, model[1].running_mean)
    assert ema.step == 30 and not any(p.requires_grad for p in ema.model.parameters())


def test_tied_weights_are_averaged_once():
    model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5, bias=False))
    model[1].weight = model[0].weight
    ema = EMA(model, decay=0.5)
    ema.step = 100  # past warm-up: d = 0.5
    before = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.model[0].weight, before + 0.5)
    assert ema.model[0].weight is ema.model[1].weight


def test_state_dict_round_trip():
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.99)
    for _ in range(3):
        ema.update(model)
    other = EMA(nn.Linear(2, 2), decay=0.99)
    other.load_state_dict(ema.state_dict())
    assert other.step == 3
    assert torch.equal(other.model.weight, ema.model.weight)
