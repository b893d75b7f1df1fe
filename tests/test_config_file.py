"""Mistakes written in config.py itself (issue 39, items 1, 2, 7 and 8): every script stops with one
line naming config.py's line and the key, before anything loads. Each test edits config.py in a
copy of the code, never the real one."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, tiny_args

SCRIPTS = ('train.py', 'test.py', 'to_npy.py', 'export.py', 'app.py')


@pytest.fixture
def repo(tmp_path):
    """A copy of the repository's code (top-level modules and glcic/) whose config.py a test edits."""
    copy = tmp_path / 'repo'
    shutil.copytree(os.path.join(ROOT, 'glcic'), copy / 'glcic', ignore=shutil.ignore_patterns('__pycache__'))
    for name in os.listdir(ROOT):
        if name.endswith('.py'):
            shutil.copy(os.path.join(ROOT, name), copy / name)
    return copy


def edit(repo, start, new, add=False):
    """Replace config.py's first line that starts with start by new (add: put new after it);
    return the number of new's line."""
    path = repo / 'config.py'
    lines = path.read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if line.startswith(start)) + add
    lines[number:number + (not add)] = [new]
    path.write_text('\n'.join(lines) + '\n')
    return number + 1


def line_of(repo, start):
    return next(i for i, line in enumerate((repo / 'config.py').read_text().splitlines(), 1)
                if line.startswith(start))


def run(repo, script, *args):
    return subprocess.run([sys.executable, script, *args], cwd=repo, capture_output=True, text=True,
                          timeout=300)


def one_line(result, *words):
    """The single stderr line of a run that stopped with status 2; it holds every word."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# --- 1. a config.py that does not parse ---

@pytest.mark.parametrize('script', SCRIPTS)
def test_a_line_that_does_not_parse_is_one_line_from_every_script(repo, script):
    number = edit(repo, 'BATCH_SIZE = ', 'BATCH_SIZE = 16)')
    line = one_line(run(repo, script), f'config.py line {number} (BATCH_SIZE = 16))', "unmatched ')'",
                    'correct that line')
    assert line.startswith('error: ')


# --- 2. values of the wrong type, written in config.py ---

@pytest.mark.parametrize('start, new, words', [
    ('BATCH_SIZE = ', "BATCH_SIZE = '16'", ["BATCH_SIZE='16'", 'expected int, got str', 'write BATCH_SIZE = 16']),
    ('BATCH_SIZE = ', 'BATCH_SIZE = 8.0', ['BATCH_SIZE=8.0', 'expected int, got float', 'write BATCH_SIZE = 8']),
    ('STOP_LOSS = ', "STOP_LOSS = '0.02'", ["STOP_LOSS='0.02'", 'expected float', 'write STOP_LOSS = 0.02']),
    ('PRECISION = ', 'PRECISION = float16  # no quotes', ['(PRECISION = float16)', "name 'float16' is not defined",
                                                          "text goes in quotes: 'float16'"]),
    ('PRESET = ', "PRESET = 'gpu'", ["PRESET='gpu'", "valid presets are '' (the values in config.py), 'cpu'"]),
    ('BATCH_SIZE = ', 'BATCH_SIZE = 0', ['BATCH_SIZE=0', 'must be >= 1']),
    ('HOLE_MAX = ', 'HOLE_MAX = 80', ['HOLE_MAX=80', 'must be <= LOCAL_SIZE (64)']),
])
def test_a_wrong_value_in_config_py_names_the_key_and_its_line(repo, tmp_path, start, new, words):
    number = edit(repo, start, new)
    one_line(run(repo, 'to_npy.py', *tiny_args(tmp_path)), f'config.py line {number}', *words)


@pytest.mark.parametrize('script', SCRIPTS)
def test_a_wrong_type_in_config_py_is_one_line_from_every_script(repo, tmp_path, script):
    number = edit(repo, 'BATCH_SIZE = ', "BATCH_SIZE = '16'")
    one_line(run(repo, script, *tiny_args(tmp_path)), f"config.py line {number}: BATCH_SIZE='16'")
    assert not (tmp_path / 'backup').exists() and not (tmp_path / 'output').exists()


def test_config_py_values_that_are_right_still_load(repo):
    edit(repo, 'ALPHA = ', 'ALPHA = 1  # an int for a float')
    edit(repo, 'BATCH_SIZE = ', 'BATCH_SIZE = _SIDE * 2')
    edit(repo, '# --- training ---', '_SIDE = 4  # a private name is no setting', add=True)
    result = run(repo, '-c', 'from glcic import cli; import config; '
                             'print(repr(config.ALPHA), config.BATCH_SIZE, config.keys() == list(config.as_dict()))')
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['1.0', '8', 'True']


# --- 7. typos in config.py ---

@pytest.mark.parametrize('start, new, add, words', [
    ('BATCH_SIZE = ', 'BATCHSIZE = 4', True, ['unknown setting BATCHSIZE; did you mean BATCH_SIZE?']),
    ('BATCH_SIZE = ', 'BATCHSIZE = 16  # renamed', False, ['unknown setting BATCHSIZE; did you mean BATCH_SIZE?']),
    ('FLIP = ', 'flip = False', True, ['unknown setting flip; did you mean FLIP?']),
    ('FLIP = ', "FLIP = 'False'  # quoted", False, ["FLIP='False'", 'expected bool, got str', 'write FLIP = False']),
    ('MASK_CHANNEL = ', 'MASK_CHANNEL = 1', False, ['MASK_CHANNEL=1', 'expected bool, got int', 'write True or False']),
])
def test_a_typo_in_config_py_is_an_error_naming_the_closest_key(repo, tmp_path, start, new, add, words):
    number = edit(repo, start, new, add)
    one_line(run(repo, 'to_npy.py', *tiny_args(tmp_path)), f'config.py line {number}', *words)
    assert not (tmp_path / 'npy').exists()


def test_a_preset_in_config_py_never_beats_the_values_written_beside_it(repo, tmp_path):
    """Every key is written in config.py, and a value written there is the one used: a PRESET there
    is one line that says what to write instead; on the command line the keys given beside it win."""
    edit(repo, 'BATCH_SIZE = ', 'BATCH_SIZE = 4')
    number = edit(repo, 'PRESET = ', "PRESET = 'cpu'")
    one_line(run(repo, 'to_npy.py', *tiny_args(tmp_path)), f'config.py line {number}',
             "PRESET='cpu': a preset is for the command line (--PRESET=cpu, where keys given beside it win); "
             'in config.py write its values instead: BATCH_SIZE = 8, PRETRAIN_EPOCH = 5, D_EPOCH = 1')
    assert not (tmp_path / 'npy').exists()
    edit(repo, 'PRESET = ', "PRESET = ''")
    result = run(repo, '-c', 'from glcic import cli; import config; print(config.BATCH_SIZE); '
                             "config.parse_overrides(['--PRESET=cpu']); print(config.BATCH_SIZE, config.D_EPOCH); "
                             "config.parse_overrides(['--PRESET=cpu', '--BATCH_SIZE=6']); print(config.BATCH_SIZE)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['4', '8', '1', '6']


def test_a_typo_in_a_preset_names_the_presets_line(repo, tmp_path):
    edit(repo, "    'cpu': ", "    'cpu': dict(BATCHSIZE=8),")
    one_line(run(repo, 'to_npy.py', *tiny_args(tmp_path)), f'config.py line {line_of(repo, "PRESETS = ")}',
             "PRESETS['cpu']: unknown setting BATCHSIZE; did you mean BATCH_SIZE?")


def test_a_typo_in_config_py_never_reaches_config_json(repo, tmp_path):
    edit(repo, 'BATCH_SIZE = ', 'BATCHSIZE = 4')
    one_line(run(repo, 'train.py', *tiny_args(tmp_path)), 'unknown setting BATCHSIZE')
    assert not (tmp_path / 'backup' / 'config.json').exists()


# --- 8. OUTPUT_DIR = None in config.py, a folder on the command line ---

def test_none_for_a_folder_in_config_py_is_named_at_its_line(repo, tmp_path):
    """No code gives None a meaning for a folder: the file's line is the mistake, not --OUTPUT_DIR."""
    number = edit(repo, 'OUTPUT_DIR = ', 'OUTPUT_DIR = None')
    line = one_line(run(repo, 'to_npy.py', '--OUTPUT_DIR=/x'),
                    f'config.py line {number}: OUTPUT_DIR=None: expected str, got NoneType; write a folder in quotes')
    assert 'not a literal' not in line
