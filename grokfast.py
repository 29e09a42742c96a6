"""
GrokFast (Lee et al. 2024, "Grokfast: Accelerated Grokking by Amplifying Slow Gradients"), the EMA filter:
before each optimizer step every gradient g gets its exponential moving average added, amplified,

    ema <- alpha * ema + (1 - alpha) * g;   g <- g + lamb * ema

so the slow (low-frequency) part of the gradient grows (1 + lamb)x while the fast part does not.

    grokfast = GrokFast(alpha=0.98, lamb=2.0)
    # backward of every micro-batch; scaler.unscale_(optimizer)
    grokfast.step(model)   # then clip, optimizer.step()

As in the paper's code (gradfilter_ema), the EMA starts at the first gradient, not at zero. The state is a
tensor per parameter name created like its gradient: under DDP the gradients are already averaged, so every
rank holds the same state; under FSDP each rank holds (and filters) its shard, a DTensor like the gradient.
"""
import torch
from torch.distributed.tensor import DTensor, distribute_tensor


class GrokFast:
    def __init__(self, alpha=0.98, lamb=2.0):
        self.alpha, self.lamb = alpha, lamb
        self.ema = {}  # parameter name -> EMA of its gradient

    @torch.no_grad()
    def step(self, model):
        """Filter the gradients of model's parameters in place. A step whose gradients are not finite (an
        fp16 overflow, a diverging step: train.py skips it) leaves the EMA as it was. True if filtered."""
        named = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm([g for _, g in named])
        if isinstance(norm, DTensor):  # FSDP: over all shards, so that every rank decides alike
            norm = norm.full_tensor()
        if not torch.isfinite(norm):
            return False
        for n, g in named:
            if n not in self.ema:
                self.ema[n] = g.detach().clone()
        emas, grads = [self.ema[n] for n, _ in named], [g for _, g in named]
        torch._foreach_mul_(emas, self.alpha)
        torch._foreach_add_(emas, grads, alpha=1 - self.alpha)
        torch._foreach_add_(grads, emas, alpha=self.lamb)
        return True

    def state_dict(self):
        """The EMA as full (unsharded) tensors keyed by parameter name, as checkpoints hold the weights: a
        run resumes under any number of processes. Collective under FSDP (every rank calls it)."""
        return {n: e.full_tensor().cpu() if isinstance(e, DTensor) else e for n, e in self.ema.items()}

    def load_state_dict(self, state, model):
        """Restore state_dict()'s tensors, sharded as model's parameters are (their gradients will be)."""
        params = dict(model.named_parameters())
        self.ema = {}
        for n, t in state.items():
            p = params[n]
            t = t.to(p.device)  # every rank holds the full tensor: each keeps its shard, no communication
            self.ema[n] = distribute_tensor(t, p.device_mesh, p.placements, src_data_rank=None) \
                if isinstance(p, DTensor) else t
