"""experiments/quality.py: a budgeted run, its checkpoints measured on the held-out split, the report."""
import importlib.util
import json
import math
import os

import pytest

from glcic import cli  # noqa: F401  quiets TensorFlow logs as the scripts do
import config
from glcic import errors, plots
from conftest import ROOT, TINY, run_script

QUALITY = 'experiments/quality.py'
METRICS = ('hole_l1', 'hole_psnr', 'psnr', 'ssim', 'beats_telea')


def tiny(**extra):
    return [f'--{k}={v}' for k, v in {**TINY, **extra}.items()]


@pytest.fixture(scope='module')
def npy_root(tmp_path_factory):
    """28 training and 2 test images of 32x32 in ROOT/npy, shared by the runs of this module."""
    root = tmp_path_factory.mktemp('runs')
    result = run_script(QUALITY, 'prepare', f'--root={root}', '--demo', '30', *tiny())
    assert result.returncode == 0, result.stderr
    return root


@pytest.mark.slow
def test_run_eval_report_cycle(npy_root, tmp_path, quality):
    import tensorflow as tf  # after cli, which quiets its logs
    folders = [f'--root={npy_root}', f'--results={tmp_path}']
    # 3 steps an epoch: one epoch of phase 1, none of phase 2, one of phase 3; MAX_EPOCH ends the run.
    run = run_script(QUALITY, 'run', 'a', '--minutes', '5', '--every', '5', *folders,
                     *tiny(PRETRAIN_EPOCH=1, D_EPOCH=0, MAX_EPOCH=2, SAMPLE_COUNT=2, BN_RECALIBRATE_BATCHES=1))
    assert run.returncode == 0, run.stdout + run.stderr
    record = json.loads((npy_root / 'a' / 'run.json').read_text())
    assert record['stopped'] == 'finished' and record['exit_status'] == 0
    assert record['overrides']['MAX_EPOCH'] == 2 and record['machine']['cores'] >= 1
    assert record['machine']['tensorflow'] == tf.__version__  # also when tensorflow-cpu is installed
    kept = sorted(p.name[:-len('.index')] for p in (npy_root / 'a' / 'backup').glob('latest-*.index'))
    assert kept == ['latest-3', 'latest-6'] and sorted(record['checkpoints']) == kept
    assert 0 < record['checkpoints']['latest-3'] < record['checkpoints']['latest-6'] <= record['wall_minutes']

    evaluated = run_script(QUALITY, 'eval', 'a', *folders)
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    result = json.loads((tmp_path / 'a.json').read_text())
    assert result['test_set']['images'] == 2 and result['test_set']['HOLE_MAX'] == TINY['HOLE_MAX']
    assert [c['checkpoint'] for c in result['checkpoints']] == kept
    assert [c['phase'] for c in result['checkpoints']] == [1, 3]
    for entry in result['checkpoints']:
        assert entry['minutes'] == record['checkpoints'][entry['checkpoint']]
        assert entry['images_seen'] == entry['step'] * TINY['BATCH_SIZE']
        for mode in ('moving_averages', 'batch_statistics'):
            assert all(math.isfinite(entry[mode][k]) for k in METRICS), entry
    for method in ('mean-pixel fill', 'OpenCV Telea'):
        assert all(math.isfinite(result['baselines'][method][k]) for k in METRICS[:4])
    # The run's loss.csv lands beside its numbers: one row per epoch, phase 3's with a d_loss.
    losses = npy_root / 'a' / 'output' / 'loss.csv'
    assert (tmp_path / 'a.loss.csv').read_bytes() == losses.read_bytes()
    rows = plots.read_rows(str(losses))
    assert [row['phase'] for row in rows] == ['1', '3'] and math.isfinite(float(rows[-1]['d_loss']))

    # The same checkpoints measured on another set: results in a@TAG.json.
    other = tmp_path / 'other'
    made = run_script('to_npy.py', '--demo', '12', '--TRAIN_RATIO=0.5', f'--NPY_DIR={other}', *tiny(SEED=7))
    assert made.returncode == 0, made.stderr
    across = run_script(QUALITY, 'eval', 'a', '--on', f'synthetic7={other}', f'--root={npy_root}',
                        f'--results={tmp_path / "across"}')  # apart: the reports below read every result
    assert across.returncode == 0, across.stdout + across.stderr
    theirs = json.loads((tmp_path / 'across' / 'a@synthetic7.json').read_text())
    assert theirs['name'] == 'a@synthetic7' and theirs['test_set']['images'] == 6
    assert theirs['test_set']['npy'] != result['test_set']['npy']
    assert [c['checkpoint'] for c in theirs['checkpoints']] == kept
    with pytest.raises(errors.UserError, match='expected TAG=FOLDER'):
        quality.main(['eval', 'a', '--on', 'nofolder', *folders])

    newest = run_script(QUALITY, 'eval', 'a', '--newest', *folders)
    assert newest.returncode == 0, newest.stdout + newest.stderr
    assert 'a: 1 checkpoints' in newest.stdout and 'latest-6' in newest.stdout and 'latest-3' not in newest.stdout
    again = json.loads((tmp_path / 'a.json').read_text())['checkpoints']
    assert again[0] == result['checkpoints'][0]  # latest-3 keeps the numbers measured before
    assert again[1]['checkpoint'] == 'latest-6'
    assert again[1]['moving_averages'] == pytest.approx(result['checkpoints'][1]['moving_averages'], abs=1e-6)

    png = tmp_path / 'quality.png'
    report = run_script(QUALITY, 'report', *folders, f'--png={png}')
    assert report.returncode == 0, report.stdout + report.stderr
    assert png.stat().st_size > 10_000
    table = (tmp_path / 'quality.md').read_text()
    assert table in report.stdout
    for row in ('| a |', '| OpenCV Telea |', '| mean-pixel fill |', 'end of phase 1', 'Goal'):
        assert row in table

    # A branch from a's first checkpoint that stays in phase 1 (PRETRAIN_EPOCH > MAX_EPOCH): its
    # clock goes on from that checkpoint's minute, and its first point is a's (same weights, same numbers).
    branched = run_script(QUALITY, 'run', 'c', '--from', 'a:latest-3', '--minutes', '5', *folders,
                          *tiny(PRETRAIN_EPOCH=5, D_EPOCH=0, MAX_EPOCH=2, SAMPLE_COUNT=2, BN_RECALIBRATE_BATCHES=1))
    assert branched.returncode == 0, branched.stdout + branched.stderr
    start = record['checkpoints']['latest-3']
    branch = json.loads((npy_root / 'c' / 'run.json').read_text())
    assert branch['from'] == {'run': 'a', 'checkpoint': 'latest-3', 'minutes': start}
    assert branch['checkpoints']['latest-3'] == start < branch['checkpoints']['latest-6']
    assert branch['wall_minutes'] < branch['checkpoints']['latest-6']  # counted from the branch point
    assert run_script(QUALITY, 'eval', 'c', *folders).returncode == 0
    result_c = json.loads((tmp_path / 'c.json').read_text())
    assert [(c['checkpoint'], c['phase']) for c in result_c['checkpoints']] == [('latest-3', 1), ('latest-6', 1)]
    first_a, first_c = result['checkpoints'][0], result_c['checkpoints'][0]
    for key in METRICS:
        assert first_c['moving_averages'][key] == pytest.approx(first_a['moving_averages'][key], abs=1e-9)
    assert all(math.isfinite(c['blended'][k]) for c in result_c['checkpoints'] for k in METRICS)
    report = run_script(QUALITY, 'report', *folders, f'--png={png}')
    assert report.returncode == 0, report.stdout + report.stderr
    assert 'At about equal minutes' in report.stdout and '| a | ' in report.stdout and '| c | ' in report.stdout
    # c's first checkpoint is a's: at that minute it differs from a by exactly nothing.
    settings_png = tmp_path / 'settings.png'
    compared = run_script(QUALITY, 'report', 'a', 'c', *folders, f'--png={settings_png}', '--against', 'a')
    assert compared.returncode == 0, compared.stdout + compared.stderr
    table = (tmp_path / 'settings.md').read_text()
    assert 'hole PSNR (dB) at about equal minutes' in table and settings_png.stat().st_size > 10_000
    row = next(line for line in table.splitlines() if line.startswith('| c | ') and '(+0.00)' in line)
    assert f'{first_c["moving_averages"]["hole_psnr"]:.2f} (+0.00)' in row
    # Both runs end within --tail's 8 minutes of a's end, so every checkpoint is in the means.
    assert 'Means over the checkpoints from minute' in table
    mean_a, mean_c = (sum(c['moving_averages']['hole_psnr'] for c in r['checkpoints']) / 2 for r in (result, result_c))
    assert f'| a | 2 | {mean_a:.2f} |' in table
    assert f'| c | 2 | {mean_c:.2f} ({mean_c - mean_a:+.2f}) |' in table
    with pytest.raises(errors.UserError, match='--against b: not among the runs'):
        quality.main(['report', 'a', 'c', *folders, f'--png={settings_png}', '--against', 'b'])
    for source, words in (('nope', 'no run nope'), ('a:latest-99', 'no checkpoint latest-99 in a; it keeps')):
        with pytest.raises(errors.UserError, match=words):
            quality.main(['run', 'd', '--from', source, '--minutes', '1', *folders])


def test_budget_stops_train_py(npy_root):
    # SIGINT ignored as in a shell's background job: the stop must still land.
    run = run_script(QUALITY, 'run', 'b', '--minutes', '0.02', f'--root={npy_root}', *tiny(MAX_EPOCH=40),
                     ignore_sigint=True)
    assert run.returncode == 0, run.stdout + run.stderr
    record = json.loads((npy_root / 'b' / 'run.json').read_text())
    assert record['stopped'] == 'budget' and record['wall_minutes'] < 1
    assert len(record['checkpoints']) < 10  # stopped, not run to MAX_EPOCH


@pytest.fixture(scope='module')
def quality():
    spec = importlib.util.spec_from_file_location('quality', os.path.join(ROOT, QUALITY))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('args, words', [
    (['run', 'x', '--minutes', '1', '--BACKUP_DIR=elsewhere'], ['sets', 'BACKUP_DIR']),
    (['run', 'x', '--minutes', '1', '--BATCHSIZE=4'], ['unknown setting BATCHSIZE']),
    (['run', 'x', '--minutes', '0'], ['--minutes 0']),
    (['run', '../x', '--minutes', '1'], ['run name']),
    (['run', 'x', '--minutes', '1'], ['no prepared images', 'prepare']),
    (['eval', 'x'], ['no run x', 'run x']),
    (['report'], ['no results', 'eval']),
])
def test_bad_input_names_the_way_out(quality, tiny_config, tmp_path, args, words):
    with pytest.raises((errors.UserError, config.ConfigError)) as error:
        quality.main([*args, f'--root={tmp_path}', f'--results={tmp_path}'])
    for word in words:
        assert word in str(error.value)


def test_a_name_is_used_once(quality, tiny_config, tmp_path):
    (tmp_path / 'x').mkdir()
    (tmp_path / 'x' / 'run.json').write_text('{}')
    with pytest.raises(errors.UserError, match='already holds a run'):
        quality.main(['run', 'x', '--minutes', '1', f'--root={tmp_path}'])
