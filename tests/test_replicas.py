"""REPLICAS and TF_CONFIG: the same graph on several devices or workers, here on the CPU split
into logical devices (no GPU needed) and on worker processes at 127.0.0.1."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import config
from glcic import data, graphs, replicas, synthetic
from conftest import ROOT, TINY, free_ports, run_script, tiny_args
from glcic.errors import UserError

tf1 = tf.compat.v1


def build(count, seed=0, **values):
    """The tiny training graph on `count` replicas (1: the plain single-device graph)."""
    config.set_values({**TINY, 'REPLICAS': count, **values})
    parallel = replicas.Replicas()
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)
        with parallel.scope():
            model = graphs.Training()
        saver = tf1.train.Saver()
        sess = parallel.session()
        sess.run([tf1.global_variables_initializer(), tf1.local_variables_initializer()])
    return model, sess, saver, parallel


def batch(model, seed=0):
    rng = np.random.RandomState(seed)
    images = synthetic.faces(config.BATCH_SIZE, config.IMAGE_SIZE, seed)
    masks, corners = data.sample_holes(rng, len(images))
    _, real = data.sample_holes(rng, len(images))
    return images, masks, corners, real


def values(sess):
    with sess.graph.as_default():
        return {v.op.name: value for v, value in zip(tf1.global_variables(), sess.run(tf1.global_variables()))}


@pytest.fixture
def start(tmp_path):
    """A checkpoint of the single-device graph's initial weights, and that graph."""
    model, sess, saver, _ = build(1)
    path = saver.save(sess, str(tmp_path / 'start'))
    return path, model, sess


def restored(count, path):
    model, sess, saver, parallel = build(count)
    saver.restore(sess, path)
    return model, sess, parallel


@pytest.mark.slow
def test_one_replica_steps_like_the_single_device_graph_bit_for_bit(start):
    path, single, single_sess = start  # REPLICAS=1: no strategy at all
    assert replicas.Replicas().strategy is None
    graph = tf.Graph()
    with graph.as_default(), tf.distribute.MirroredStrategy(['/CPU:0']).scope():
        mirrored = graphs.Training()
        sess = tf1.Session(graph=graph)
        tf1.train.Saver().restore(sess, path)
    for phase in (1, 2, 3):
        feed = batch(single, seed=phase)
        single_sess.run(single.train_ops[phase], single.feed(*feed))
        sess.run(mirrored.train_ops[phase], mirrored.feed(*feed))
    want, got = values(single_sess), values(sess)
    assert want.keys() == got.keys()
    for name in want:
        assert np.array_equal(want[name], got[name]), name


@pytest.mark.slow
def test_two_replicas_apply_the_mean_of_their_gradients(start):
    path, single, single_sess = start
    model, sess, parallel = restored(2, path)
    assert parallel.count == 2 and parallel.cpu_devices == 2
    images, masks, corners, real = batch(model, seed=5)
    halves = [slice(0, 4), slice(4, 8)]
    loss = config.MSE_SCALE * single.mse
    with single_sess.graph.as_default():
        grads = tf.gradients(loss, single.g_vars)
    each = [single_sess.run(grads, single.feed(images[h], masks[h], corners[h], real[h])) for h in halves]
    mse = [single_sess.run(single.mse, single.feed(images[h], masks[h], corners[h], real[h])) for h in halves]
    d_loss = [single_sess.run(single.d_loss, single.feed(images[h], masks[h], corners[h], real[h])) for h in halves]
    got = sess.run([model.mse, model.d_loss], model.feed(images, masks, corners, real))
    assert got == pytest.approx([np.mean(mse), np.mean(d_loss)], rel=1e-5)

    sess.run(model.train_ops[1], model.feed(images, masks, corners, real))
    with sess.graph.as_default():
        slots = {v.op.name: v for v in tf1.global_variables()}
    m = sess.run([slots[f'{v.op.name}/g_adam'] for v in model.g_vars])
    for got_m, pair in zip(m, zip(*each)):
        np.testing.assert_allclose(got_m, (1 - config.BETA1) * np.mean(pair, axis=0), rtol=2e-4, atol=1e-9)
    assert model.state(sess)[3] == 1  # one update


@pytest.mark.slow
def test_a_checkpoint_of_two_replicas_restores_into_one(tmp_path, start):
    path, _, _ = start
    model, sess, _ = restored(2, path)
    sess.run(model.train_ops[3], model.feed(*batch(model, seed=2)))
    with sess.graph.as_default():
        two = tf1.train.Saver().save(sess, str(tmp_path / 'two'))
    want = values(sess)
    one, one_sess, _ = restored(1, two)
    got = values(one_sess)
    assert all(np.array_equal(want[name], got[name]) for name in want)


def test_settings_that_do_not_split_are_one_line_errors():
    config.set_values({**TINY, 'REPLICAS': 3})
    parallel = replicas.Replicas()
    with pytest.raises(UserError, match='BATCH_SIZE=8 does not split into 3 replicas'):
        parallel.check(8, 1)
    config.set_values({**TINY, 'REPLICAS': 2})
    with pytest.raises(UserError, match='ACCUM_STEPS=2 works with one replica only'):
        replicas.Replicas().check(8, 2)


# --- the command line ----------------------------------------------------------------------


def checkpoint_values(path):
    reader = tf1.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


@pytest.fixture(scope='module')
def npy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('replicas')
    made = run_script('to_npy.py', '--demo', '72', '--TRAIN_RATIO=0.9', *tiny_args(tmp))
    assert made.returncode == 0, made.stderr
    return tmp


def train_args(npy, tmp, **extra):
    return [*tiny_args(tmp, NPY_DIR=f'{npy}/npy', PRETRAIN_EPOCH=1, D_EPOCH=1, **extra)]


def wait_for_a_save(procs, backup_dir, timeout=240):
    deadline = time.monotonic() + timeout
    while not list(backup_dir.glob('latest-*.index')):
        assert all(p.poll() is None for p in procs), 'train.py ended before its first save'
        assert time.monotonic() < deadline, f'no save in {timeout} s'
        time.sleep(0.05)


@pytest.mark.slow
def test_kill_9_with_two_replicas_resumes_exactly(npy, tmp_path):
    whole = run_script('train.py', *train_args(npy, tmp_path / 'whole', REPLICAS=2, MAX_EPOCH=3))
    assert whole.returncode == 0, whole.stderr
    assert '2 replicas, 4 images each per step' in whole.stdout

    cut = tmp_path / 'cut'
    command = [sys.executable, os.path.join(ROOT, 'train.py'), *train_args(npy, cut, REPLICAS=2, MAX_EPOCH=3)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_a_save([proc], cut / 'backup')
    time.sleep(0.5)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = run_script('train.py', *train_args(npy, cut, REPLICAS=2, MAX_EPOCH=3))
    assert resumed.returncode == 0, resumed.stderr
    assert 'resumed' in resumed.stdout
    want = checkpoint_values(tf1.train.latest_checkpoint(str(tmp_path / 'whole' / 'backup')))
    got = checkpoint_values(tf1.train.latest_checkpoint(str(cut / 'backup')))
    assert want.keys() == got.keys()
    assert [name for name in want if not np.array_equal(want[name], got[name])] == []


def start_workers(npy, tmp, ports, **extra):
    cluster = {'worker': [f'127.0.0.1:{p}' for p in ports]}
    procs = []
    for index in range(len(ports)):
        env = {**os.environ, 'TF_CONFIG': json.dumps({'cluster': cluster, 'task': {'type': 'worker', 'index': index}})}
        procs.append(subprocess.Popen([sys.executable, os.path.join(ROOT, 'train.py'), *train_args(npy, tmp, **extra)],
                                      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs, timeout=300):
    outs = [p.communicate(timeout=timeout) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out[-2000:] + err[-3000:]
    return [out for out, _ in outs]


def digest(out):
    return re.search(r'weights digest (\w+)', out).group(1)


@pytest.mark.slow
def test_two_workers_end_with_the_same_weights_and_resume_together(npy, tmp_path):
    ports = free_ports(2)
    first = finish(start_workers(npy, tmp_path, ports, MAX_EPOCH=3))
    assert '2 replicas on 2 workers (this is worker 0, which writes the files)' in first[0]
    assert digest(first[0]) == digest(first[1])
    saved = tf1.train.latest_checkpoint(str(tmp_path / 'backup'))
    assert saved and (tmp_path / 'output' / 'loss.csv').exists()

    again = finish(start_workers(npy, tmp_path, free_ports(2), MAX_EPOCH=4))
    for out in again:
        assert re.search(r'resumed .*: phase 3, epoch 4', out), out[-2000:]
    assert digest(again[0]) == digest(again[1]) != digest(first[0])
    assert int(checkpoint_values(tf1.train.latest_checkpoint(str(tmp_path / 'backup')))['state/epoch']) == 4


@pytest.mark.slow
def test_a_dead_worker_stops_the_run_with_a_clear_message_and_the_save_kept(npy, tmp_path):
    procs = start_workers(npy, tmp_path, free_ports(2), MAX_EPOCH=50)
    wait_for_a_save(procs, tmp_path / 'backup')
    procs[1].send_signal(signal.SIGKILL)
    out, err = procs[0].communicate(timeout=120)
    assert procs[0].returncode == 2, out[-2000:] + err[-2000:]  # cli.run's status for a UserError
    assert 'another worker stopped or stopped answering' in err
    assert 'start every worker again with the same command to resume' in err
    last = tf1.train.latest_checkpoint(str(tmp_path / 'backup'))
    assert last and checkpoint_values(last)  # readable, not half-written
    procs[1].communicate()


@pytest.mark.slow
def test_stopping_one_worker_stops_both_at_the_same_step_after_a_save(npy, tmp_path):
    procs = start_workers(npy, tmp_path, free_ports(2), MAX_EPOCH=50)
    wait_for_a_save(procs, tmp_path / 'backup')
    procs[1].send_signal(signal.SIGTERM)  # the worker that does not write
    outs = finish(procs, timeout=120)
    assert 'another worker was stopped' in outs[0]
    assert 'run python train.py to resume' in outs[0]
    assert digest(outs[0]) == digest(outs[1])
    saved = tf1.train.latest_checkpoint(str(tmp_path / 'backup'))
    assert int(saved.rsplit('-', 1)[1]) == int(checkpoint_values(saved)['state/step'])
