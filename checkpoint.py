"""
Checkpoints: written atomically (a kill at any moment leaves the previous one whole), never with
non-finite weights over a good one, read back with one clear line when they cannot be; and the
official TRM code's parameter names, for `--init_from=trm:PATH`.

A checkpoint (ckpt.pt, best.pt) is a dict: model, ema ({model, step, decay} or None), optimizer (keyed
by parameter name, unsharded), grokfast (the gradient filter's EMA, keyed by parameter name, unsharded; or
None), model_args, config, task ('lm', 'puzzle' or 'control'), iter_num,
best_val_loss, wandb_run_id, system (control: the system the data was solved for), meta (the data's
meta.pkl / meta.json: a language model's vocabulary, None for GPT-2's), rng.
"""
import os
import re
import shutil
import sys

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

from common import write_atomic
from model import GPT, GPTConfig


def gather(model, optimizer, ema, fsdp, grokfast=None):
    """The weights, optimizer state, EMA and GrokFast state as full tensors, the optimizer and GrokFast state
    keyed by parameter name. Collective under FSDP (every rank calls it; rank 0's copy is on the CPU), so a
    checkpoint saved under FSDP resumes in one process, with DDP or with another number of processes."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=fsdp)
    state = {'model': get_model_state_dict(model, options=options),
             'optimizer': get_optimizer_state_dict(model, optimizer, options=options), 'ema': None,
             'grokfast': grokfast.state_dict() if grokfast is not None else None}
    if ema is not None:
        state['ema'] = {'model': get_model_state_dict(ema.model, options=options), 'step': ema.step, 'decay': ema.decay}
    return state


def save(ckpt, path, check_finite=True):
    """Write ckpt to path through a temporary file and a rename. With check_finite, non-finite weights
    are not written (the previous checkpoint stays). True if written."""
    if check_finite and not all(torch.isfinite(t).all() for t in ckpt['model'].values() if t.is_floating_point()):
        print(f"not saving {path}: the weights are not finite (the previous checkpoint stays)")
        return False
    write_atomic(path, lambda tmp: torch.save(ckpt, tmp))
    return True


def link_best(out_dir):
    """best.pt := ckpt.pt, as a hard link (the next os.replace of ckpt.pt leaves it in place), or a copy
    on a filesystem without hard links."""
    src, best, tmp = (os.path.join(out_dir, f) for f in ('ckpt.pt', 'best.pt', 'best.pt.tmp'))
    if os.path.exists(tmp):
        os.remove(tmp)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, best)


def read(path, device='cpu'):
    """The checkpoint dict at path. FileNotFoundError or ValueError with one line saying what to do."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found; train first (python train.py --out_dir={os.path.dirname(path)})")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # truncated, corrupted, or not a checkpoint of ours
        raise ValueError(f"cannot read {path} ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                         f"restore it, or train from scratch into another out_dir") from None
    if 'task' not in ckpt:  # written before checkpoints recorded their task: the model's shape tells
        args = ckpt['model_args']
        ckpt['task'] = 'control' if args.get('n_outputs') else 'lm' if args.get('causal', True) else 'puzzle'
    return ckpt


def load_model(path, device='cpu', use_ema=True):
    """(model in eval mode, checkpoint dict) of a train.py checkpoint; the EMA weights when use_ema
    and the run kept them."""
    ckpt = read(path, device)
    model = GPT(GPTConfig(**ckpt['model_args']))
    model.load_state_dict(ckpt['ema']['model'] if use_ema and ckpt.get('ema') else ckpt['model'])
    return model.eval().to(device), ckpt


def load_or_exit(out_dir, ckpt_name, device, use_ema):
    """(model, checkpoint dict, path) for sample.py and solve.py; exits with the one-line error."""
    path = os.path.join(out_dir, ckpt_name)
    try:
        return (*load_model(path, device, use_ema), path)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")


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
    if model.config.separate_nets:  # models/recursive_reasoning/trm.py updates z_L and z_H with one L_level
        raise ValueError("the official TRM code has one net (L_level) for both updates: no weights for "
                         "separate_nets=True's second stack")
    if model.config.memory_slots:
        raise ValueError("the official TRM code has no memory: no weights for memory_slots > 0")
    if model.config.yz_init_from:
        raise ValueError("the official TRM code starts every example from H_init/L_init: no weights for yz_init_from")
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
