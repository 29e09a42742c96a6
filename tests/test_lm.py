"""Tests of lm.py: the cross-entropies, batches of nanoGPT's format, the tokenizers."""
import numpy as np
import pytest
import torch

import lm


def test_stablemax_cross_entropy_values_and_finite_gradient_at_one():
    # logits exactly 1.0 (bf16 logits hit it often): the unused 1 / (1 - x) branch must not make the gradient NaN
    logits = torch.tensor([[[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]], requires_grad=True)
    Y = torch.tensor([[1, -100]])
    ce = lm.cross_entropy(logits, Y, 'stablemax')
    s = lambda x: x + 1 if x >= 0 else 1 / (1 - x)
    assert ce[0, 0].item() == pytest.approx(-np.log(s(-2.0) / (s(1.0) + s(-2.0) + s(0.5))), rel=1e-6)
    assert ce[0, 1].item() == 0  # ignored
    ce.sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0, 1].abs().sum() == 0


def test_softmax_cross_entropy_ignores_minus_100_and_the_batch_is_a_shifted_window(tmp_path):
    logits = torch.randn(2, 3, 5)
    Y = torch.tensor([[1, 2, -100], [0, 4, 3]])
    ce = lm.cross_entropy(logits, Y)
    assert ce[0, 2] == 0 and ce[1, 0].item() == pytest.approx(-torch.log_softmax(logits[1, 0], -1)[0].item(), rel=1e-6)
    np.arange(300, dtype=np.uint16).tofile(tmp_path / 'train.bin')
    np.arange(50, dtype=np.uint16).tofile(tmp_path / 'val.bin')
    data = lm.load(str(tmp_path), {'block_size': 8})
    assert data['length'] == {'train': 300, 'val': 50} and lm.model_args(data, {})['vocab_size'] == 50304
    X, Y, P = lm.get_batch(data, 'val', torch.tensor([3, 40]))
    assert X.tolist()[0] == list(range(3, 11)) and Y.tolist()[1] == list(range(41, 49)) and P is None
    with pytest.raises(ValueError, match='prepare.py'):
        lm.load(str(tmp_path / 'missing'), {'block_size': 8})


def test_char_tokenizer_round_trips_and_names_unknown_characters():
    encode, decode = lm.tokenizer({'stoi': {'a': 0, 'b': 1}, 'itos': {0: 'a', 1: 'b'}})
    assert decode(encode('abba')) == 'abba'
    with pytest.raises(ValueError, match="'z'"):
        encode('abz')
