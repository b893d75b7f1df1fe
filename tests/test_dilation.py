"""Dilated convolutions train on every CPU: native where TensorFlow has their gradient, else by
space-to-batch, with the same results and variables."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT, run_script, tiny_args
import layer
import network

tf1 = tf.compat.v1
RATES = (2, 4, 8, 16)


def spread_kernel(w, rate):
    """The dilated kernel as an ordinary one, zeros between its taps: a reference that any
    TensorFlow differentiates. w [k,k,C,O] -> [(k-1)*rate+1, same, C, O]."""
    k = w.shape[0]
    taps = [[i * rate, j * rate] for i in range(k) for j in range(k)]
    size = (k - 1) * rate + 1
    return tf.scatter_nd(taps, tf.reshape(w, [k * k, *w.shape[2:]]), [size, size, *w.shape[2:]])


def outputs_and_gradients(path, rate, monkeypatch, image, weights):
    """dilated_conv on `path` ('reference': spread_kernel), and the gradients of a fixed
    loss for its input and weights."""
    monkeypatch.setattr(layer, 'dilation_path', lambda: path)
    with tf.Graph().as_default():
        x = tf.constant(image)
        if path == 'reference':
            w = tf.constant(weights)
            y = tf.nn.conv2d(x, spread_kernel(w, rate), strides=1, padding='SAME')
        else:
            y = layer.dilated_conv(x, weights.shape[-1], 3, rate, 'dilated', bias=False)
            w = tf1.trainable_variables()[0]
        probe = np.random.RandomState(1).randn(*y.shape).astype(np.float32)
        loss = tf.reduce_sum(y * probe)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            if path != 'reference':
                w.load(weights, sess)
            return sess.run([y, *tf.gradients(loss, [x, w])])


def check_path(path, rate, side, monkeypatch):
    rng = np.random.RandomState(rate + side)
    image = rng.randn(2, side, side, 3).astype(np.float32)
    weights = rng.randn(3, 3, 3, 4).astype(np.float32)
    want = outputs_and_gradients('reference', rate, monkeypatch, image, weights)
    got = outputs_and_gradients(path, rate, monkeypatch, image, weights)
    for name, a, b in zip(('output', 'input gradient', 'weight gradient'), got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3, err_msg=f'{path}: {name}')


SIDES = [8, 20]  # a rate above the side, and a side that rates do not divide


@pytest.mark.parametrize('rate', RATES)
@pytest.mark.parametrize('side', SIDES)
def test_space_to_batch_gives_the_dilated_convolution_and_its_gradients(rate, side, monkeypatch):
    check_path('space-to-batch', rate, side, monkeypatch)


@pytest.mark.parametrize('rate', RATES)
@pytest.mark.parametrize('side', SIDES)
def test_native_path_gives_the_same(rate, side, monkeypatch):
    if layer.dilation_path() != 'native':
        pytest.skip('this TensorFlow has no native dilated-convolution gradient (oneDNN off on a CPU)')
    check_path('native', rate, side, monkeypatch)


def generator_outputs(path, monkeypatch, image, masks, checkpoint, save):
    """The completion network built on `path`: its variable names and its batch-statistics
    output, after saving its initial weights to `checkpoint` (save) or restoring them."""
    monkeypatch.setattr(layer, 'dilation_path', lambda: path)
    with tf.Graph().as_default():
        tf1.set_random_seed(0)
        x = tf.constant(image)
        out = network.generator(network.generator_input(x, tf.constant(masks), tf.zeros([3])), training=True)
        saver = tf1.train.Saver()
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            if save:
                saver.save(sess, checkpoint)
            else:
                saver.restore(sess, checkpoint)
            return sorted(v.op.name for v in tf1.global_variables()), sess.run(out)


def test_a_checkpoint_of_either_path_restores_into_the_other(tiny_config, monkeypatch, tmp_path):
    rng = np.random.RandomState(0)
    image = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    masks = np.zeros((2, 32, 32, 1), np.float32)
    masks[:, 8:20, 10:22] = 1
    first, second = 'space-to-batch', 'native'
    for _ in range(2):
        checkpoint = str(tmp_path / first)
        names, saved = generator_outputs(first, monkeypatch, image, masks, checkpoint, save=True)
        names_other, restored = generator_outputs(second, monkeypatch, image, masks, checkpoint, save=False)
        assert names == names_other
        np.testing.assert_allclose(restored, saved, rtol=1e-4, atol=1e-4)
        first, second = second, first


@pytest.mark.parametrize('script, user, want', [
    ('train.py', None, '1'),   # training: on x86 oneDNN is turned on
    ('train.py', '0', '0'),    # unless the user chose
    ('test.py', None, None),   # inference keeps TensorFlow's default
])
def test_cli_turns_onednn_on_for_training_on_x86_only(script, user, want):
    import platform
    env = {k: v for k, v in os.environ.items() if k != 'TF_ENABLE_ONEDNN_OPTS'}
    if user is not None:
        env['TF_ENABLE_ONEDNN_OPTS'] = user
    code = (f'import sys; sys.argv = [{script!r}]; import os; from glcic import cli; '
            f'print(os.environ.get("TF_ENABLE_ONEDNN_OPTS"))')
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True, text=True)
    x86 = platform.machine().lower() in ('x86_64', 'amd64')
    assert result.stdout.strip() == str(want if x86 or user else None)


@pytest.mark.slow
def test_training_without_onednn_runs_all_three_phases(tmp_path):
    """TensorFlow's own CPU kernels, as on a CPU without AVX-512: the space-to-batch path trains."""
    args = tiny_args(tmp_path)
    made = run_script('to_npy.py', '--demo', '24', '--TRAIN_RATIO=0.67', *args)
    assert made.returncode == 0, made.stderr
    env = {**os.environ, 'TF_ENABLE_ONEDNN_OPTS': '0'}
    trained = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), *args, '--PRETRAIN_EPOCH=1',
                              '--D_EPOCH=1', '--MAX_EPOCH=3', '--STOP_LOSS=0.0'],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr
    assert 'oneDNN off' in trained.stdout and 'dilated convolutions space-to-batch' in trained.stdout
    rows = (tmp_path / 'output' / 'loss.csv').read_text().splitlines()[1:]
    assert [row.split(',')[1] for row in rows] == ['1', '2', '3']
    assert all(np.isfinite(float(value)) for row in rows for value in row.split(',')[4:] if value)
