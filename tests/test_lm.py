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
    # eval_iters=0: every window of the split once (starts 0, 8, ..., 40 of 50 - 8), batches spread over the ranks
    whole = {'eval_iters': 0, 'batch_size': 2}
    assert [ix.tolist() for ix in lm.eval_rows(data, 'val', None, whole, 0, 1)] == [[0, 8], [16, 24], [32, 40]]
    assert [ix.tolist() for ix in lm.eval_rows(data, 'val', None, whole, 1, 2)] == [[16, 24]]


def test_char_tokenizer_round_trips_and_names_unknown_characters():
    encode, decode = lm.tokenizer({'stoi': {'a': 0, 'b': 1}, 'itos': {0: 'a', 1: 'b'}})
    assert decode(encode('abba')) == 'abba'
    with pytest.raises(ValueError, match="'z'"):
        encode('abz')


def test_answer_mask_makes_only_the_answer_tokens_targets(tmp_path):
    np.arange(300, dtype=np.uint16).tofile(tmp_path / 'train.bin')
    np.arange(50, dtype=np.uint16).tofile(tmp_path / 'val.bin')
    masks = {split: (np.arange(n) % 3 == 0).astype(np.uint8) for split, n in (('train', 300), ('val', 50))}
    for split, mask in masks.items():
        mask.tofile(tmp_path / f'{split}_mask.bin')
    data = lm.load(str(tmp_path), {'block_size': 8})
    X, Y, _ = lm.get_batch(data, 'train', torch.tensor([4, 100]))
    assert X[0].tolist() == list(range(4, 12))  # inputs stay whole
    assert Y[0].tolist() == [t if t % 3 == 0 else -100 for t in range(5, 13)]
    masks['val'][:-1].tofile(tmp_path / 'val_mask.bin')  # one byte short
    with pytest.raises(ValueError, match='val_mask.bin is missing or not one byte per token'):
        lm.load(str(tmp_path), {'block_size': 8})


CHARS = '\n+=0123456789'
META = {'vocab_size': len(CHARS), 'stoi': {c: i for i, c in enumerate(CHARS)}, 'itos': dict(enumerate(CHARS))}


def test_examples_pack_whole_into_rows_that_mark_their_answers():
    examples = [{'prompt': '1+2=', 'answer': '3', 'group': 1, 'token_groups': [0]},
                {'prompt': '15+7=', 'answer': '22', 'group': 2, 'token_groups': [1, 0]},
                {'prompt': '9+9=', 'answer': '18', 'group': 1, 'token_groups': [1, 0]}]
    rows = lm.pack_examples(examples, META, 16, 'test')
    text = [''.join(CHARS[t] for t in row) for row in rows['tokens'].tolist()]
    # whole examples only, each row led by a newline as in the training stream, padded with newlines
    assert text == ['\n1+2=3\n15+7=22\n\n\n', '\n9+9=18\n' + '\n' * 9]
    for i, ex in enumerate(examples):
        at = rows['eid'] == i
        targets = rows['tokens'][:, 1:][at]
        assert ''.join(CHARS[t] for t in targets.tolist()) == ex['answer'] + '\n'
        assert rows['label'][at].tolist() == ex['token_groups'] + [-1]
    assert rows['group'].tolist() == [1, 2, 1]
    with pytest.raises(ValueError, match='does not fit block_size=6'):
        lm.pack_examples(examples, META, 6, 'test')
    with pytest.raises(ValueError, match="character 'x' is not in meta.pkl"):
        lm.pack_examples([{'prompt': 'x=', 'answer': '1', 'group': 0, 'token_groups': [0]}], META, 12, 'test')


@pytest.mark.parametrize('threshold', [1.0, 0.5])
def test_exact_match_is_greedy_decoding_through_the_kv_cache(threshold):
    # exact match is scored teacher-forced over whole rows; greedy decoding through the KV cache writes an
    # answer exactly when every answer token is the teacher-forced argmax. Answers made of the model's own
    # greedy tokens score right, and changing any one of them makes the example wrong
    from generate import decode, generate
    from model import GPT, GPTConfig
    torch.manual_seed(0)
    m = GPT(GPTConfig(block_size=24, vocab_size=len(CHARS), n_layer=1, n_head=2, n_kv_head=1, n_embd=32,
                      n_loops=1, T_recursion=2, n_sup=3)).double().eval()
    with torch.no_grad():  # a q-head that halts some tokens early
        m.q_head.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(1))
        m.q_head.bias.zero_()
    prompt = torch.randint(0, len(CHARS), (4, 10))
    row, steps = generate(m, prompt, 8, temperature=0, halt_threshold=threshold)  # through the cache
    eid = torch.full((4, 17), -1)
    eid[:, 9:] = torch.arange(4)[:, None]  # targets 9..16 predict the 8 generated tokens
    X, Y = row[:, :-1], row[:, 1:]
    logits, _ = decode(m, X, None, 0, 3, threshold)
    assert lm.wrong_answers(logits, Y, eid, 4).tolist() == [0, 0, 0, 0]
    if threshold < 1:
        assert (steps < 3).any()  # halting took part
    for j in range(9, 17):  # any changed answer token (and so the tokens after it) is wrong
        Y_bad = Y.clone()
        Y_bad[1, j] = (Y[1, j] + 1) % len(CHARS)
        assert lm.wrong_answers(logits, Y_bad, eid, 4).tolist()[1] > 0
