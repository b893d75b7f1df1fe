"""train.py's loop: window means, epoch means and the stop rule stay right across a resume;
no save is written twice, and `pretrained` is the save it equals, linked or copied."""
import dataclasses
import errno
import filecmp
import functools
import os
import types

import numpy as np
import pytest
import tensorflow as tf

import config
import layer
import to_npy
import train
from glcic import backup, errors, graphs, stopping, synthetic
from conftest import tiny_args, tiny_graph, train_in_process

tf1 = tf.compat.v1


class StubSession:
    """Answers the loop's session.run calls: every step's mse is 1.0."""

    def run(self, fetches, feed=None):
        return [None, {name: 1.0 for name in fetches[1]}]


def stub_run(steps, logged):
    model = types.SimpleNamespace(train_ops={1: 'step'}, losses={1: {'mse': 'mse'}},
                                  feed=lambda *args: {}, state=lambda sess: (1, 0, 0, 0),
                                  epoch_means=lambda sess, phase: {'mse': 1.0})
    log = types.SimpleNamespace(scalars=lambda step, values: logged.append(values))
    images = np.zeros((steps * config.BATCH_SIZE, config.IMAGE_SIZE, config.IMAGE_SIZE, 3), np.uint8)
    return train.Run(StubSession(), model, images, types.SimpleNamespace(signal=None), log, lambda: None)


def test_window_means_after_a_mid_epoch_resume_divide_by_the_steps_in_the_window(tiny_config):
    config.set_values({'LOG_EVERY': 5})
    logged = []
    means = train.run_epoch(stub_run(12, logged), 1, 0, first_step=3)  # windows: 3-4, 5-9, 10-11
    assert [values['mse'] for values in logged] == [1.0, 1.0, 1.0]
    assert means == {'mse': 1.0}


class StopAfter:
    """An interrupt whose flag rises at the loop's `steps`-th look (after that many steps)."""

    def __init__(self, steps):
        self.steps, self.looks = steps, 0

    @property
    def signal(self):
        self.looks += 1
        return self.looks >= self.steps


def real_run():
    """The tiny training graph in a train.Run (seeded), with functions that save it to a path
    and restore it from one."""
    model, sess = tiny_graph(seed=0)
    with sess.graph.as_default():
        saver = tf1.train.Saver()
    images = synthetic.faces(6 * config.BATCH_SIZE, config.IMAGE_SIZE, 3)
    log = types.SimpleNamespace(scalars=lambda step, values: None)
    run = train.Run(sess, model, images, types.SimpleNamespace(signal=None), log, lambda: None)
    return run, lambda path: saver.save(sess, str(path)), lambda path: saver.restore(sess, path)


def test_epoch_means_after_a_resume_cover_every_step_of_the_epoch(tiny_config, tmp_path):
    """Mid-epoch, and a Ctrl-C on the epoch's last step: the resumed epoch's means are the
    uninterrupted epoch's, not those of the steps after the resume (or none at all)."""
    run, save, restore = real_run()
    start = save(tmp_path / 'start')
    whole = train.run_epoch(run, 1, 0, 0)  # 6 steps
    for stop in (2, 6):
        restore(start)
        partial = train.run_epoch(dataclasses.replace(run, interrupt=StopAfter(stop)), 1, 0, 0)
        assert run.model.state(run.sess)[2] == stop
        restore(save(tmp_path / f'stopped-{stop}'))
        means = train.run_epoch(run, 1, 0, stop)
        assert means['mse'] == pytest.approx(whole['mse'], rel=1e-6), stop
        if stop < 6:
            assert partial['mse'] != pytest.approx(whole['mse'], rel=1e-3)  # the test can tell


# --- the stop rule ---

def test_the_stop_rule_waits_while_realism_improves_and_guards_hole_psnr():
    improving = [0.9 - 0.02 * k for k in range(30)]
    psnr = [20.0] * 30
    assert stopping.first_stop(improving, psnr, 20.0, window=5, least_gain=0.01) is None
    flat = improving[:10] + [0.72] * 20  # improves until epoch 10, then stays
    fired = stopping.first_stop(flat, [20.0] * 30, 20.0, window=5, least_gain=0.01)
    assert fired == 18  # epochs 14-18 (mean 0.720) against 9-13 (0.724): less than 0.01 gained
    reason = stopping.stop_rule(flat[:18], psnr[:18], 20.0, 5, 0.01)
    assert 'the last 5 epochs, 0.720, is not lower than the best earlier 5-epoch mean, 0.724' in reason
    assert stopping.stop_rule(flat[:9], psnr[:9], 20.0, 5, 0.01) is None  # fewer than 2 windows: never
    falling_psnr = [20.0 - 0.1 * k for k in range(30)]  # fidelity traded for realism
    reason = stopping.stop_rule(improving[:12], falling_psnr[:12], 20.0, 5, 0.01)
    assert reason and 'hole PSNR' in reason and '0.5 dB below' in reason
    # the epoch kept as backup/best: most realistic within the guard
    assert stopping.best_epoch([0.8, 0.6, 0.5, 0.7], [20.0, 19.8, 19.2, 20.1], 20.0) == 1
    assert stopping.best_epoch([0.8], [18.0], 20.0) is None


def test_each_phase_3_epochs_validation_scores_are_kept_with_the_weights(tiny_config, tmp_path):
    model, sess = tiny_graph(seed=0)
    scores = [(0.9, 18.5), (0.8, 18.7), (0.75, 18.4)]
    sess.run(model.set_val_baseline, {model.val_value: (0.95, 18.6)})
    for pair in scores:
        sess.run(model.record_val, {model.val_value: pair})
    want = ([s[0] for s in scores], [s[1] for s in scores], (0.95, 18.6))
    assert model.val_history(sess) == want
    with sess.graph.as_default():
        tf1.train.Saver().save(sess, str(tmp_path / 'ckpt'))
    other, other_sess = tiny_graph(seed=1)
    with other_sess.graph.as_default():
        tf1.train.Saver().restore(other_sess, str(tmp_path / 'ckpt'))
    assert other.val_history(other_sess) == want
    for _ in range(graphs.VAL_HISTORY):  # only the latest VAL_HISTORY epochs are kept
        sess.run(model.record_val, {model.val_value: (0.5, 20.0)})
    assert model.val_history(sess)[:2] == ([0.5] * graphs.VAL_HISTORY, [20.0] * graphs.VAL_HISTORY)


# --- saves ---

def recorded(monkeypatch, owner, name):
    """Replace owner.name by a wrapper that records each call's arguments; returns the list."""
    calls, real = [], getattr(owner, name)

    def record(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)
    monkeypatch.setattr(owner, name, record)
    return calls


@pytest.fixture
def tiny_data(tmp_path):
    """20 synthetic faces under tmp_path: 19 for training (2 steps an epoch), 1 for testing."""
    to_npy.main(['--demo', '20', *tiny_args(tmp_path)])
    return tmp_path


def test_a_run_stopped_by_max_epoch_keeps_the_save_of_its_last_epoch(tiny_data, capsys, monkeypatch):
    saves = recorded(monkeypatch, backup, 'save')
    recalibrations = recorded(monkeypatch, graphs.Training, 'recalibrate')
    status, printed = train_in_process(tiny_data, capsys, '--PRETRAIN_EPOCH=2', '--MAX_EPOCH=1')
    latest = tiny_data / 'backup' / 'latest-2'
    assert status == 0
    assert 'epoch 1 phase 1: ' in printed and f'saved {latest}\n' in printed
    assert f'stopped: reached MAX_EPOCH=1; saved {latest}\n' in printed
    assert len(saves) == len(recalibrations) == 1


@pytest.mark.parametrize('links', [True, False])
def test_pretrained_is_the_save_it_equals_linked_or_copied(tiny_data, capsys, monkeypatch, links):
    """Where the file system has no hard links (os.link fails), the files are copied."""
    if not links:
        def no_links(source, target):
            raise OSError(errno.EPERM, 'Operation not permitted', source)
        monkeypatch.setattr(os, 'link', no_links)
    saves = recorded(monkeypatch, backup, 'save')
    status, printed = train_in_process(tiny_data, capsys, '--PRETRAIN_EPOCH=1', '--D_EPOCH=1', '--MAX_EPOCH=3')
    folder = tiny_data / 'backup'
    assert status == 0 and f'phase 1 done after 1 epochs: saved {folder / "pretrained"}\n' in printed
    assert [(name, step) for _, _, name, step in saves] == [('latest', 2), ('latest', 4), ('latest', 6)]
    files = sorted(path.name[len('latest-2'):] for path in folder.glob('latest-2.*'))
    assert files == ['.data-00000-of-00001', '.index']
    assert sorted(path.name for path in folder.glob('pretrained*')) == [f'pretrained{f}' for f in files]
    for suffix in files:
        same = folder / f'latest-2{suffix}', folder / f'pretrained{suffix}'
        assert os.path.samefile(*same) == links and filecmp.cmp(*same, shallow=False)
    reader = tf.compat.v1.train.NewCheckpointReader(str(folder / 'pretrained'))
    assert (reader.get_tensor('state/phase'), reader.get_tensor('state/step')) == (1, 2)


def test_a_failed_alias_keeps_the_previous_save_in_charge(tiny_config, tmp_path, monkeypatch):
    """No room for the copy (os.link failing too): one line, the old `pretrained` whole, no
    temporary file left."""
    tf1 = tf.compat.v1
    config.set_values({'BACKUP_DIR': str(tmp_path)})
    with tf.Graph().as_default():
        variable = tf1.get_variable('v', [2], initializer=tf1.zeros_initializer())
        saver = tf1.train.Saver()
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            backup.save(sess, saver, backup.PRETRAINED)
            sess.run(variable.assign([1.0, 2.0]))
            latest = backup.save(sess, saver, backup.LATEST, 3)
    before = {path.name: path.read_bytes() for path in tmp_path.glob('pretrained.*')}

    def no_room(source, target):
        with open(target, 'wb') as f:
            f.write(b'half')
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(os, 'link', lambda source, target: no_room(source, target))
    monkeypatch.setattr(backup.shutil, 'copyfile', no_room)
    with pytest.raises(errors.UserError, match=r'^could not save to .*No space left on device.*the previous '
                                               r'checkpoint is unchanged') as error:
        backup.alias(latest, backup.PRETRAINED)
    assert '\n' not in str(error.value)
    assert {path.name: path.read_bytes() for path in tmp_path.glob('pretrained.*')} == before
    assert not list(tmp_path.glob('*tempstate*'))
    monkeypatch.undo()
    assert backup.alias(latest, backup.PRETRAINED) == str(tmp_path / 'pretrained')
    reader = tf1.train.NewCheckpointReader(str(tmp_path / 'pretrained'))
    assert reader.get_tensor('v').tolist() == [1.0, 2.0]


@pytest.mark.parametrize('precision', ['float16', 'bfloat16'])
def test_train_py_trains_in_each_precision_and_says_when_float16_is_slow(tiny_data, capsys, precision):
    on_cpu = not tf.config.list_physical_devices('GPU')
    status, printed = train_in_process(tiny_data, capsys, f'--PRECISION={precision}', '--PRETRAIN_EPOCH=1',
                                       '--D_EPOCH=1', '--MAX_EPOCH=3')
    assert status == 0
    assert 'epoch 3 phase 3: ' in printed
    assert f'dilated convolutions {layer.dilation_path(precision)}; ' in printed
    assert ('note: float16 has no fast CPU kernels' in printed) == (precision == 'float16' and on_cpu)


@pytest.mark.parametrize('precision', ['float32', 'float16', 'bfloat16'])
def test_train_py_trains_each_precision_on_the_custom_gradient_whatever_the_cpu(tiny_data, capsys,
                                                                               monkeypatch, precision):
    """The path a CPU without that precision's gradient kernels takes, forced on every machine."""
    monkeypatch.setenv('GLCIC_DILATION', 'custom-gradient')
    monkeypatch.setattr(layer, 'dilation_path', functools.lru_cache(layer.dilation_path.__wrapped__))
    status, printed = train_in_process(tiny_data, capsys, f'--PRECISION={precision}', '--PRETRAIN_EPOCH=1',
                                       '--D_EPOCH=1', '--MAX_EPOCH=2')
    assert status == 0
    assert 'dilated convolutions custom-gradient; ' in printed and 'epoch 2 phase 2: ' in printed
    rows = (tiny_data / 'output' / 'loss.csv').read_text().splitlines()[1:]
    assert len(rows) == 2 and all(np.isfinite(float(v)) for row in rows for v in row.split(',')[4:] if v)
