"""Tests of puzzle_io.py: the text formats solve.py reads and prints, and the rule verdicts."""
import json

import numpy as np
import pytest

import puzzle_io as T
import puzzles as P
from test_puzzles import load_module, sudoku_pair


def test_sudoku_text_parses_blanks_and_rejects_bad_input():
    puzzle, sol = sudoku_pair()
    text = ''.join('.' if t == 1 else str(t - 1) for t in puzzle)
    x, expected = T.parse_puzzle('sudoku', text)
    assert np.array_equal(x, puzzle) and expected is None
    assert np.array_equal(T.parse_puzzle('sudoku', text.replace('.', '0'))[0], puzzle)
    shown = T.puzzle_text('sudoku', sol)
    assert np.array_equal(T.parse_puzzle('sudoku', shown.replace('|', '').replace('-', '').replace('+', ''))[0], sol)
    with pytest.raises(ValueError, match='80 cells'):
        T.parse_puzzle('sudoku', text[:-1])
    with pytest.raises(ValueError, match="'x'"):
        T.parse_puzzle('sudoku', 'x' + text[1:])
    assert T.puzzle_verdict('sudoku', puzzle, sol).startswith('valid')
    broken = sol.copy()
    broken[[0, 1]] = broken[[1, 0]]  # two cells of row 0 swapped: their columns and boxes break
    assert T.puzzle_verdict('sudoku', puzzle, broken).startswith('invalid')
    clash = puzzle.copy()
    clash[:2] = 5  # two equal givens: no answer can be valid
    assert T.puzzle_verdict('sudoku', clash, sol).startswith('invalid')


def test_maze_text_round_trips_and_checks_the_path():
    prep = load_module('maze')
    x, y, length = prep.make_example(np.random.default_rng(1), 10, 60, 0.1)
    text = T.puzzle_text('maze', y)  # the label drawn with '*' on the path: reads back as the input
    assert text.count('\n') == 29 and text.count('*') == length - 1
    x2, _ = T.parse_puzzle('maze', text)
    assert np.array_equal(x2, x)
    assert T.puzzle_verdict('maze', x, y).startswith('valid') and f'({length} steps)' in T.puzzle_verdict('maze', x, y)
    assert T.puzzle_verdict('maze', x, x).startswith('invalid')
    with pytest.raises(ValueError, match="one 'S'"):
        T.parse_puzzle('maze', text.replace('S', '.'))
    with pytest.raises(ValueError, match='29 lines'):
        T.parse_puzzle('maze', '\n'.join(text.splitlines()[1:]))


def test_arc_task_file_parses_and_compares_with_the_expected_output():
    task = {'train': [], 'test': [{'input': [[1, 2], [3, 4]], 'output': [[2, 1], [4, 3]]}, {'input': [[5]]}]}
    x, y = T.parse_puzzle('arc', json.dumps(task))
    assert np.array_equal(P.arc_decode(x), [[1, 2], [3, 4]]) and np.array_equal(P.arc_decode(y), [[2, 1], [4, 3]])
    assert T.puzzle_text('arc', y) == '2 1\n4 3'
    assert 'matches' in T.puzzle_verdict('arc', x, y, y) and 'differs' in T.puzzle_verdict('arc', x, x, y)
    x1, y1 = T.parse_puzzle('arc', json.dumps(task), arc_test=1)
    assert y1 is None and 'no expected output' in T.puzzle_verdict('arc', x1, x1, y1)
    assert T.puzzle_text('arc', np.zeros(900, int)).startswith('(no well-formed grid')
    for bad in ('{"test": []}', 'not json', '{"test": [{"input": [[1, 10]]}]}'):
        with pytest.raises(ValueError, match='not an ARC task'):
            T.parse_puzzle('arc', bad)
