"""
Generation with an exact KV cache through the recursion.

    idx, steps = generate(model, prompt, 500, temperature=0.8, top_k=200)

Every attention site of the recursion (supervision step, cycle, net call, layer) keeps its own keys
and values, because the same layer sees a different state at each call; decoding one token at a time
then gives the logits a full recomputation of the window gives.

Per-token halting (halt_threshold < 1) follows the one definition in model.halted: a halted token keeps
the logits of its halting step, and later steps' attention sees its keys/values of that step. decode()
implements it for a prompt, a window and a single new token alike, so decoding token by token through the
cache and recomputing the whole window (model.HaltedKV) give the same logits.

Surprise-gated memory writes (memory_write_threshold, off by default) turn the memory bank into state:
each consumed token whose surprise exceeds the threshold writes to the bank (model.Memory.write) and
later tokens read the changed bank. Then the cache no longer equals recomputing the window: that is the point.
"""
import functools

import torch

from model import HaltedKV, halted, keep_halted


class KVCache:
    """Keys/values of every attention site of the recursion, preallocated for a whole window.

    k, v: one tensor [B, n_kv_head, block_size, head_dim] per site, slot j holding the window's token j;
    decode() allocates them. New tokens are written in place and attention runs over all block_size
    slots with a mask, so every one-token step has the same shapes (a compiled step is one graph, no
    recompiles). Separate tensors rather than views of one buffer: inductor writes a graph input in
    place, but a write into a view of one makes it copy the whole buffer, every token. Slots past the
    newest token may hold stale values: the mask hides them."""

    def __init__(self, k=None, v=None, positions=None, mask=None, running=None, prev=None):
        self.k = k
        self.v = v
        self.positions = positions  # slots of the new tokens [L]
        self.mask = mask            # the slots each new token sees [L, block_size]
        self.running = running      # halting: which new tokens still compute [B, L] (None: all)
        self.prev = prev            # halting: the previous step's (k, v) sites, where halted tokens keep theirs
        self.site = 0               # the next site forward() visits

    def allocate(self, sites, shape, dtype, device):  # shape of one site: [B, n_kv_head, block_size, head_dim]
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(sites)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(sites)]
        self.slots = torch.arange(shape[2], device=device)
        self.causal = self.slots <= self.slots[:, None]  # row p: the slots a token at position p sees

    def step(self, s, n, positions, mask, running=None):
        """The n sites of supervision step s, for new tokens at positions [L] seeing mask [L, block_size];
        running [B, L]: the tokens that compute this step (the others keep their step s-1 keys/values).
        A view with its own site counter, visited in a fixed order by forward()."""
        prev = None if running is None else (self.k[(s - 1) * n:s * n], self.v[(s - 1) * n:s * n])
        return KVCache(self.k[s * n:(s + 1) * n], self.v[s * n:(s + 1) * n], positions, mask, running, prev)

    def __call__(self, k, v):  # k, v: [B, n_kv_head, L, hd] of the new tokens -> the site's k, v, mask
        k_all, v_all = self.k[self.site], self.v[self.site]
        if self.running is not None:  # halted tokens: the keys/values of their halting step, carried forward
            k = keep_halted(k.to(k_all.dtype), self.prev[0][self.site][:, :, self.positions], self.running)
            v = keep_halted(v.to(v_all.dtype), self.prev[1][self.site][:, :, self.positions], self.running)
        k_all[:, :, self.positions] = k.to(k_all.dtype)
        v_all[:, :, self.positions] = v.to(v_all.dtype)
        self.site += 1
        return k_all, v_all, self.mask


def sites_per_step(config):
    """Attention sites of one supervision step (cache entries per step): one per block call, whichever
    stack runs it (with separate_nets the y updates' sites are those of the y stack's blocks)."""
    calls = config.T_recursion * (config.n_loops + 1) if config.recursion else 1
    return config.n_layer * calls


@torch.no_grad()
def decode(model, idx, cache, pos, n_sup, halt_threshold=1.0, step=None):
    """Run the recursion over new tokens idx [B, L] at positions pos.., writing their keys/values into
    the cache (None: no cache, idx is the whole context). With halt_threshold < 1 every token halts as
    model.halted defines (1.0: never). step: what runs one supervision step (default model itself;
    generate passes a compiled one). Returns the logits of every new token [B, L, V] (of its halting step)
    and the steps each used [B, L]."""
    cfg = model.config
    B, L = idx.shape
    n = sites_per_step(cfg)
    step = step or model
    halting = model.q_head is not None and halt_threshold < 1.0
    if cache is not None:
        if pos + L > cfg.block_size:
            raise ValueError(f"positions {pos}..{pos + L - 1} do not fit block_size {cfg.block_size}")
        if cache.k is None:  # in the dtype attention will produce (autocast's, if on)
            dev = idx.device
            autocasting = torch.is_autocast_enabled(dev.type)
            dtype = torch.get_autocast_dtype(dev.type) if autocasting else model.lm_head.weight.dtype
            cache.allocate(n_sup * n, (B, cfg.n_kv_head, cfg.block_size, cfg.n_embd // cfg.n_head), dtype, dev)
        if len(cache.k) < n_sup * n or cache.k[0].size(0) != B:
            raise ValueError(f"this cache holds {len(cache.k) // n} steps of batch {cache.k[0].size(0)}, "
                             f"not {n_sup} of batch {B}: start a new KVCache()")
        positions = cache.slots[pos:pos + L]  # a token sees the slots up to its own (causal) or every written one
        mask = cache.causal[pos:pos + L] if cfg.causal else (cache.slots < pos + L).expand(L, -1)
    y = z = None
    if not halting:  # every token runs every step: no bookkeeping, no syncs
        for s in range(n_sup):
            logits, _, y, z = step(idx, y, z, None if cache is None else cache.step(s, n, positions, mask))
        return logits, torch.full((B, L), n_sup, dtype=torch.long, device=idx.device)
    running = torch.ones(B, L, dtype=torch.bool, device=idx.device)  # tokens that have not halted
    used = torch.zeros(B, L, dtype=torch.long, device=idx.device)    # steps each token computed
    sites = None
    for s in range(n_sup):
        if cache is not None:
            sites = cache.step(s, n, positions, mask, running if s else None)
        else:
            sites = HaltedKV(running if s else None, sites)
        step_logits, q, y, z = step(idx, y, z, sites)
        logits = step_logits if s == 0 else torch.where(running[..., None], step_logits, logits)
        used += running
        running &= ~halted(q, halt_threshold)
        if not running.any():
            if cache is not None:  # the later steps' sites: every token's halting-step keys/values
                for later in range(s + 1, n_sup):
                    for kv in (cache.k, cache.v):
                        for j in range(n):
                            kv[later * n + j][:, :, positions] = kv[s * n + j][:, :, positions]
            break
    return logits, used


def check_memory_writes(model, threshold, use_cache=True, compile=False):
    """ValueError unless memory writes (threshold not None) can run: a causal model with a memory, the
    eager cached path."""
    if threshold is None:
        return
    if model.memory is None:
        raise ValueError(f"memory_write_threshold={threshold} writes to the memory bank, and this model has none "
                         "(memory_slots=0): train one with memory_slots > 0")
    if not model.config.causal:
        raise ValueError(f"memory_write_threshold={threshold} writes as a causal LM consumes tokens; this model is "
                         "bidirectional (puzzle/control): solve.py runs it")
    if not use_cache or compile:
        raise ValueError(f"memory_write_threshold={threshold} runs tokens one at a time through the eager cache: "
                         "set use_cache=True and compile=False")


@torch.no_grad()
def consume(model, idx, cache, pos, n_sup, halt_threshold, prev, threshold, rate):
    """decode() the new tokens idx [B, L] at positions pos.. one at a time, each writing to the memory as it
    is consumed (model.Memory.write): its surprise is -log softmax(prev)[token], prev the logits [B, V] that
    predicted it (the previous position's, of its final supervision step; None: the first token has none and
    writes nothing). Each token first runs with the bank as it is, then writes: a write is seen by later
    tokens only. What it writes: h, the input of its last memory read (the last z update's; with
    memory_read_y the y update's), and v, its answer state (the output head's input, y), both of its final
    supervision step. That is the halting step only with one row
    (a halted row of a batch keeps computing, discarded, while others run): generate passes one row.
    Returns decode's logits [B, L, V] and steps [B, L]."""
    state = {}
    hooks = [model.memory.register_forward_hook(lambda m, args, out: state.__setitem__('h', args[0])),
             model.lm_head.register_forward_hook(lambda m, args, out: state.__setitem__('v', args[0]))]
    logits, used = [], []
    try:
        for t in range(idx.size(1)):
            token = idx[:, t:t + 1]
            out, steps = decode(model, token, cache, pos + t, n_sup, halt_threshold)
            if prev is not None:
                surprise = -torch.log_softmax(prev.float(), -1).gather(-1, token)  # [B, 1]
                model.memory.write(state['h'], state['v'], surprise, threshold, rate)
            prev = out[:, -1]
            logits.append(out)
            used.append(steps)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.cat(logits, dim=1), torch.cat(used, dim=1)


@torch.no_grad()
def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, n_sup=None, halt_threshold=1.0,
             use_cache=True, compile=False, memory_write_threshold=None, memory_write_rate=0.1):
    """Sample max_new_tokens after idx [B, T] (temperature 0: greedy). Returns the extended idx and the
    supervision steps behind each new token [B, max_new_tokens].

    The context is a window of at most block_size tokens. When a new token would overflow it, the
    window slides to its last block_size // 2 tokens and the cache is refilled from them, so every
    distribution equals a full recomputation over the current window, halting included (use_cache=False
    recomputes it for every token, for reference and benchmarks). compile: torch.compile the supervision
    step (one-token steps with the cache, whole windows without; prefills run eager).

    memory_write_threshold (None: off, exactly as without it): every token fed to the model, prompt and
    generated alike, is consumed one at a time through the cache (see consume), and one whose surprise in
    nats exceeds the threshold moves a slot of the memory toward it at memory_write_rate (model.Memory.write;
    0: every token not predicted with certainty writes). The cache keeps the keys/values tokens had when
    they ran, so it no longer equals recomputing the window; a slide refills the cache from the window's
    consumed tokens with the bank as it is then, writing nothing again. Each row of a batch runs on its own
    from the model's bank, and the bank is restored when generate returns: the model (and its checkpoint)
    is unchanged, and the same seed gives the same output. Needs use_cache=True, compile=False."""
    check_memory_writes(model, memory_write_threshold, use_cache, compile)
    if memory_write_threshold is not None:
        if idx.size(0) > 1:  # one bank per sequence: rows one after another, each from the model's bank
            rows = [generate(model, row[None], max_new_tokens, temperature, top_k, n_sup, halt_threshold,
                             memory_write_threshold=memory_write_threshold, memory_write_rate=memory_write_rate)
                    for row in idx]
            return torch.cat([r[0] for r in rows]), torch.cat([r[1] for r in rows])
        bank = model.memory.keys.clone(), model.memory.values.clone()
        try:
            return _generate(model, idx, max_new_tokens, temperature, top_k, n_sup, halt_threshold, use_cache,
                             compile, memory_write_threshold, memory_write_rate)
        finally:
            model.memory.keys.copy_(bank[0])
            model.memory.values.copy_(bank[1])
    return _generate(model, idx, max_new_tokens, temperature, top_k, n_sup, halt_threshold, use_cache, compile)


def _generate(model, idx, max_new_tokens, temperature, top_k, n_sup, halt_threshold, use_cache, compile,
              write_threshold=None, write_rate=None):
    # generate's loop; with writes, one row whose bank generate restores
    n_sup = n_sup or model.n_sup
    block = model.config.block_size
    step = compiled_step(model, use_cache) if compile else None
    # without halting, a cached token is one compiled call: every supervision step and the sampling
    fused = None
    if compile and use_cache and (model.q_head is None or halt_threshold >= 1.0):
        fused = compiled_token()
    start = max(0, idx.size(1) - block)  # first position of the window
    cache = None
    steps = []
    idx_next = logits = None
    for _ in range(max_new_tokens):
        if idx.size(1) - start > block:
            start = idx.size(1) - block // 2
            cache = None
        if write_threshold is not None:
            if cache is None:
                cache = KVCache()
                if idx_next is not None and idx.size(1) - 1 > start:  # after a slide: the consumed tokens, no writes
                    decode(model, idx[:, start:-1], cache, 0, n_sup, halt_threshold)
            new = idx[:, start:] if idx_next is None else idx_next
            logits, used = consume(model, new, cache, idx.size(1) - new.size(1) - start, n_sup, halt_threshold,
                                   None if logits is None else logits[:, -1], write_threshold, write_rate)
        elif not use_cache:
            logits, used = decode(model, idx[:, start:], None, 0, n_sup, halt_threshold, step)
        elif cache is None:  # prefill the window in one pass, each token halting as it would one at a time
            cache = KVCache()
            logits, used = decode(model, idx[:, start:], cache, 0, n_sup, halt_threshold)
        elif fused is not None:
            p = idx.size(1) - 1 - start
            idx_next = fused(model, idx_next, cache, cache.slots[p:p + 1], cache.causal[p:p + 1], n_sup,
                             temperature, top_k)
            idx = torch.cat([idx, idx_next], dim=1)
            steps.append(torch.full((idx.size(0),), n_sup, dtype=torch.long))
            continue
        else:
            logits, used = decode(model, idx_next, cache, idx.size(1) - 1 - start, n_sup, halt_threshold, step)
        idx_next = sample_token(logits[:, -1], temperature, top_k)
        idx = torch.cat([idx, idx_next], dim=1)
        steps.append(used[:, -1].cpu())
    return idx, torch.stack(steps, dim=1)


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
# nothing halts) or else one supervision step. One-token steps over the preallocated cache have fixed
# shapes (dynamic=False: one graph, no recompiles), while recomputed windows grow by a token every step
# (dynamic=True). A token is a
# few dozen tiny kernels, so the C++ wrapper (no Python between kernels) matters here, and so does
# decompose_mm_pass: on the CPU it turns a one-row matmul (batch 1 decoding) into a multiply-and-sum that
# inductor fuses with its neighbours, where a call into the BLAS costs more than the arithmetic (1.25x per
# cached token, measured).
COMPILE_OPTIONS = {'cpp_wrapper': True, 'post_grad_fusion_options': {'decompose_mm_pass': {}}}
_compiled = {}


def _cached_step(model, idx, y, z, cache):  # one-token steps over the preallocated cache
    return model(idx, y, z, cache)


def _window_step(model, idx, y, z, sites):  # the whole window, recomputed (sites: a HaltedKV when halting)
    return model(idx, y, z, sites)


def _cached_token(model, idx, cache, positions, mask, n_sup, temperature, top_k):
    # one new token per row at the cache slots `positions`, all steps, no halting -> the next token
    n = sites_per_step(model.config)
    y = z = None
    for s in range(n_sup):
        logits, _, y, z = model(idx, y, z, cache.step(s, n, positions, mask))
    return sample_token(logits[:, -1], temperature, top_k)


def compiled_token():
    if 'token' not in _compiled:
        _compiled['token'] = torch.compile(_cached_token, dynamic=False, options=COMPILE_OPTIONS)
    return _compiled['token']


def compiled_step(model, use_cache):
    """One supervision step, compiled: over one-token cached steps (fixed shapes) or whole windows."""
    if use_cache not in _compiled:  # separate functions: separate dynamo caches
        fn = _cached_step if use_cache else _window_step
        _compiled[use_cache] = torch.compile(fn, dynamic=not use_cache, options=COMPILE_OPTIONS)
    return functools.partial(_compiled[use_cache], model)
