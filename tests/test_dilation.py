"""Dilated convolutions train on every CPU and in every precision: native where TensorFlow has
their gradient, else by their custom gradient or space-to-batch, with the same results and variables."""
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


def outputs_and_gradients(path, rate, monkeypatch, image, weights, dtype='float32'):
    """dilated_conv on `path` ('reference': spread_kernel, in float32) computing in `dtype`, and
    the gradients of a fixed loss for its input and weights, as float32."""
    monkeypatch.setattr(layer, 'dilation_path', lambda dtype='float32': path)
    with tf.Graph().as_default():
        x = tf.constant(image)
        if path == 'reference':
            w = tf.constant(weights)
            y = tf.nn.conv2d(x, spread_kernel(w, rate), strides=1, padding='SAME')
        else:
            w = tf1.get_variable('w', weights.shape, initializer=tf1.constant_initializer(weights))
            with tf1.variable_scope('net', custom_getter=lambda getter, *a, **k: tf.cast(w, dtype)):
                y = tf.cast(layer.dilated_conv(tf.cast(x, dtype), weights.shape[-1], 3, rate, 'dilated',
                                               bias=False), tf.float32)
        probe = np.random.RandomState(1).randn(*y.shape).astype(np.float32)
        loss = tf.reduce_sum(y * probe)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            return sess.run([y, *tf.gradients(loss, [x, w])])


def check_path(path, rate, side, monkeypatch, dtype='float32'):
    rng = np.random.RandomState(rate + side)
    image = rng.randn(2, side, side, 3).astype(np.float32)
    weights = rng.randn(3, 3, 3, 4).astype(np.float32)
    want = outputs_and_gradients('reference', rate, monkeypatch, image, weights)
    got = outputs_and_gradients(path, rate, monkeypatch, image, weights, dtype)
    # float16 keeps 11 significant bits and bfloat16 8; sums of up to 9 x 3 x 800 terms.
    rtol, atol = {'float32': (1e-4, 1e-3), 'float16': (1e-2, 0.1), 'bfloat16': (5e-2, 1.0)}[dtype]
    for name, a, b in zip(('output', 'input gradient', 'weight gradient'), got, want):
        scale = np.abs(b).max()
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * max(1.0, scale / 100),
                                   err_msg=f'{path} in {dtype}: {name}')


SIDES = [8, 20]  # a rate above the side, and a side that rates do not divide


@pytest.mark.parametrize('rate', RATES)
@pytest.mark.parametrize('side', SIDES)
@pytest.mark.parametrize('path', ['custom-gradient', 'space-to-batch'])
def test_each_fallback_gives_the_dilated_convolution_and_its_gradients(path, rate, side, monkeypatch):
    check_path(path, rate, side, monkeypatch)


@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
@pytest.mark.parametrize('rate', [2, 16])
def test_the_custom_gradient_holds_in_each_half_precision(dtype, rate, monkeypatch):
    check_path('custom-gradient', rate, 20, monkeypatch, dtype)


@pytest.mark.parametrize('rate', RATES)
@pytest.mark.parametrize('side', SIDES)
def test_native_path_gives_the_same(rate, side, monkeypatch):
    if layer.dilation_path() != 'native':
        pytest.skip('this TensorFlow has no native dilated-convolution gradient (oneDNN off on a CPU)')
    check_path('native', rate, side, monkeypatch)


def test_the_probe_picks_a_path_that_differentiates_each_precision(monkeypatch):
    """Each precision gets a path that trains, and GLCIC_DILATION forces one (or names the choices)."""
    probe = layer.dilation_path
    for dtype in ('float32', 'float16', 'bfloat16'):
        path = probe(dtype)
        assert path in layer.DILATION_PATHS
        check_path(path, 4, 8, monkeypatch, dtype)
    monkeypatch.setenv('GLCIC_DILATION', 'space-to-batch')
    assert probe.__wrapped__('float16') == 'space-to-batch'
    monkeypatch.setenv('GLCIC_DILATION', 'fast')
    with pytest.raises(ValueError, match='custom-gradient'):
        probe.__wrapped__('float32')


def generator_outputs(path, monkeypatch, image, masks, checkpoint, save):
    """The completion network built on `path`: its variable names and its batch-statistics
    output, after saving its initial weights to `checkpoint` (save) or restoring them."""
    monkeypatch.setattr(layer, 'dilation_path', lambda dtype='float32': path)
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


def test_a_checkpoint_of_any_path_restores_into_the_others(tiny_config, monkeypatch, tmp_path):
    rng = np.random.RandomState(0)
    image = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    masks = np.zeros((2, 32, 32, 1), np.float32)
    masks[:, 8:20, 10:22] = 1
    paths = layer.DILATION_PATHS
    for first, second in zip(paths, paths[1:] + paths[:1]):
        checkpoint = str(tmp_path / first)
        names, saved = generator_outputs(first, monkeypatch, image, masks, checkpoint, save=True)
        names_other, restored = generator_outputs(second, monkeypatch, image, masks, checkpoint, save=False)
        assert names == names_other
        np.testing.assert_allclose(restored, saved, rtol=1e-4, atol=1e-4)


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
    """TensorFlow's own CPU kernels, as on a CPU without AVX-512: the custom gradient trains."""
    args = tiny_args(tmp_path)
    made = run_script('to_npy.py', '--demo', '24', '--TRAIN_RATIO=0.67', *args)
    assert made.returncode == 0, made.stderr
    env = {**os.environ, 'TF_ENABLE_ONEDNN_OPTS': '0'}
    trained = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), *args, '--PRETRAIN_EPOCH=1',
                              '--D_EPOCH=1', '--MAX_EPOCH=3', '--STOP_LOSS=0.0'],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr
    assert 'oneDNN off' in trained.stdout and 'dilated convolutions custom-gradient' in trained.stdout
    rows = (tmp_path / 'output' / 'loss.csv').read_text().splitlines()[1:]
    assert [row.split(',')[1] for row in rows] == ['1', '2', '3']
    assert all(np.isfinite(float(value)) for row in rows for value in row.split(',')[4:] if value)
