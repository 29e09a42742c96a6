"""
Exponential moving average of a model's weights (TRM evaluates with it).

    ema = EMA(model, decay=0.999)
    ...optimizer.step(); ema.update(model)
    evaluate(ema.model)

ema.model is a frozen copy of the model; after `step` updates its floating-point
tensors follow  e <- d_t * e + (1 - d_t) * p  with  d_t = min(decay, (1 + t) / (10 + t)),
the usual warm-up so that early evaluations are not dominated by the random init.
"""
import copy

import torch


class EMA:
    def __init__(self, model, decay=0.999):
        self.decay = decay
        self.step = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self):
        return min(self.decay, (1 + self.step) / (10 + self.step))

    @torch.no_grad()
    def update(self, model):
        d = self.current_decay()
        # parameters() lists a tied weight once, so it is averaged once
        ema_params, params = list(self.model.parameters()), list(model.parameters())
        torch._foreach_lerp_(ema_params, params, 1.0 - d)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)
        self.step += 1

    def state_dict(self):
        return {'model': self.model.state_dict(), 'step': self.step, 'decay': self.decay}

    def load_state_dict(self, state):
        self.model.load_state_dict(state['model'])
        self.step = state['step']
