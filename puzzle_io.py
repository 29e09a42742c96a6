"""
Puzzles as people write and read them (solve.py): parse a Sudoku, maze or ARC task from its text format,
print an answer as a grid, and say in one line whether it obeys the puzzle's rules.
"""
import json

import numpy as np

from puzzles import (ARC_SIZE, MAZE_GOAL, MAZE_OPEN, MAZE_PATH, MAZE_START, MAZE_WALL, TOKEN_TEXT, arc_decode,
                     arc_encode, maze_distances, maze_path_ok, sudoku_valid)

MAZE_CHARS = {'#': MAZE_WALL, '.': MAZE_OPEN, 'S': MAZE_START, 'G': MAZE_GOAL, '*': MAZE_OPEN}  # '*' (path) reads as open
TEXT_FORMATS = {
    'sudoku': "81 characters, row by row: digits 1-9, '.' or '0' for a blank (whitespace ignored), "
              "or a file holding them",
    'maze': "a file of 30 lines of 30 characters: '#' wall, '.' open, 'S' start, 'G' goal ('*' path cells read as open)",
    'arc': "an ARC task file (JSON: {\"train\": [...], \"test\": [{\"input\": grid, \"output\": grid}]}, "
           "grids as lists of rows of colours 0-9); arc_test picks the test pair",
}


def kind_of(vocab_size, seq_len):
    """The puzzle kind of a token format, for a checkpoint whose data folder is not at hand."""
    return {(11, 81): 'sudoku', (6, 900): 'maze', (12, 900): 'arc'}[(vocab_size, seq_len)]


def parse_puzzle(kind, text, arc_test=0):
    """A puzzle in its text format (TEXT_FORMATS; solve.py reads files first) as (input tokens [L], expected
    answer tokens or None). ValueError with what is wrong and the format otherwise."""
    fmt = f"expected {TEXT_FORMATS[kind]}"
    if kind == 'sudoku':
        cells = ''.join(text.split())
        bad = sorted(set(cells) - set('.0123456789'))
        if bad or len(cells) != 81:
            what = f"characters {', '.join(map(repr, bad))}" if bad else f"{len(cells)} cells"
            raise ValueError(f"not a Sudoku ({what}): {fmt}")
        return np.array([1 if c in '.0' else int(c) + 1 for c in cells], np.int64), None
    if kind == 'maze':
        lines = text.splitlines()
        bad = sorted(set(''.join(lines)) - set(MAZE_CHARS))
        if bad or len(lines) != 30 or any(len(line) != 30 for line in lines):
            what = f"characters {', '.join(map(repr, bad))}" if bad else \
                f"{len(lines)} lines of lengths {sorted(set(map(len, lines)))}"
            raise ValueError(f"not a maze ({what}): {fmt}")
        cells = ''.join(lines)
        if cells.count('S') != 1 or cells.count('G') != 1:
            raise ValueError(f"a maze needs exactly one 'S' and one 'G', got {cells.count('S')} and {cells.count('G')}")
        return np.array([MAZE_CHARS[c] for c in cells], np.int64), None
    try:
        pair = json.loads(text)['test'][arc_test]
        x = arc_encode(pair['input']).astype(np.int64)
        y = arc_encode(pair['output'], labels=True).astype(np.int64) if 'output' in pair else None
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise ValueError(f"not an ARC task with test pair {arc_test} ({type(e).__name__}: {e}): {fmt}") from None
    return x, y


def puzzle_text(kind, tokens):
    """Tokens [L] as a grid to print: Sudoku with box lines, a maze with '*' on the path, an ARC grid as
    colour digits (cropped at EOS; the raw canvas when the tokens hold no well-formed grid)."""
    tokens = np.asarray(tokens)
    if kind == 'sudoku':
        cells = [TOKEN_TEXT['sudoku'][t] if 0 <= t <= 10 else '?' for t in tokens]
        rows = [' | '.join(' '.join(cells[r * 9 + c:r * 9 + c + 3]) for c in (0, 3, 6)) for r in range(9)]
        return '\n'.join(rows[:3] + ['------+-------+------'] + rows[3:6] + ['------+-------+------'] + rows[6:])
    if kind == 'maze':
        chars = TOKEN_TEXT['maze']
        return '\n'.join(''.join(chars[t] if 0 <= t < 6 else '?' for t in tokens[r * 30:(r + 1) * 30]) for r in range(30))
    grid = arc_decode(tokens)
    if grid is None:  # PAD '.', EOS '|', colours as digits
        rows = tokens.reshape(ARC_SIZE, ARC_SIZE)
        return '(no well-formed grid; the canvas:)\n' + '\n'.join(
            ''.join(TOKEN_TEXT['arc'][t] if 0 <= t < 12 else '?' for t in row) for row in rows)
    return '\n'.join(' '.join(str(c) for c in row) for row in grid)


def puzzle_verdict(kind, x, answer, expected=None):
    """One line: does the answer obey the puzzle's rules? Sudoku: the constraints and the givens (not a stored
    solution); maze: a shortest S->G path (any of them); ARC has no rules: compared with `expected` if given."""
    if kind == 'sudoku':
        if sudoku_valid(x, answer):
            return "valid: every row, column and box holds 1-9 once, and the givens are kept"
        g = answer.reshape(9, 9)
        units = [g[r] for r in range(9)] + [g[:, c] for c in range(9)] + \
                [g[r:r + 3, c:c + 3].ravel() for r in (0, 3, 6) for c in (0, 3, 6)]
        broken = sum(sorted(u) != list(range(2, 11)) for u in units)
        changed = int(((answer != x) & (x >= 2)).sum())
        return f"invalid: {broken} of 27 rows/columns/boxes do not hold 1-9 once, {changed} givens changed"
    if kind == 'maze':
        start, goal = np.flatnonzero(x == MAZE_START)[0], np.flatnonzero(x == MAZE_GOAL)[0]
        shortest = maze_distances((x != MAZE_WALL).reshape(30, 30), divmod(int(start), 30))[divmod(int(goal), 30)]
        n = int((answer == MAZE_PATH).sum())
        if maze_path_ok(x, answer):
            return f"valid: a shortest path from S to G ({shortest} steps)"
        if shortest < 0:
            return "invalid: G cannot be reached from S, so no path is right"
        return (f"invalid: not a shortest S->G path through open cells ({n} path cells marked; "
                f"a shortest path has {shortest - 1})")
    if expected is None:
        return "ARC has no rules to check, and the task file gives no expected output for this test pair"
    got = arc_decode(answer)
    ok = got is not None and np.array_equal(got, arc_decode(expected))
    return f"ARC has no rules to check; {'matches' if ok else 'differs from'} the task file's expected output"
