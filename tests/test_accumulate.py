"""ACCUM_STEPS: k micro-batches make one update with their mean gradient; batch norm sees each."""
import numpy as np
import pytest
import tensorflow as tf

import config
import train
from glcic import data, synthetic
from conftest import tiny_graph

tf1 = tf.compat.v1


def build(**values):
    return tiny_graph(seed=2, **values)


def feeds(model, count, seed=0):
    rng = np.random.RandomState(seed)
    images = synthetic.faces(count * config.BATCH_SIZE, config.IMAGE_SIZE, seed)
    masks, corners = data.sample_holes(rng, len(images))
    _, real = data.sample_holes(rng, len(images))
    parts = [slice(i, i + config.BATCH_SIZE) for i in range(0, len(images), config.BATCH_SIZE)]
    return [model.feed(images[p], masks[p], corners[p], real[p]) for p in parts]


def slot_m(sess, variables, optimizer):
    """Adam's first moment of each variable: after one update from zero it is (1 - beta1) * grad."""
    with sess.graph.as_default():
        slots = {v.op.name: v for v in tf1.global_variables()}
    return sess.run([slots[f'{v.op.name}/{optimizer}'] for v in variables])


def gradients(sess, loss, variables, feeds):
    """The gradient of loss on each feed (built once: each tf.gradients adds a backward graph)."""
    with sess.graph.as_default():
        grads = tf.gradients(loss, variables)
    return [sess.run(grads, feed) for feed in feeds]


@pytest.mark.parametrize('k', [2, 3])
def test_k_micro_batches_make_one_update_with_their_mean_gradient(tiny_config, k):
    model, sess = build(ACCUM_STEPS=k)
    micro = feeds(model, k)
    loss = config.MSE_SCALE * model.mse
    each = gradients(sess, loss, model.g_vars, micro)
    mse = [sess.run(model.mse, f) for f in micro]
    losses = train.train_step(sess, model, 1, micro)
    expected = [(1 - config.BETA1) * np.mean(g, axis=0) for g in zip(*each)]
    for got, want in zip(slot_m(sess, model.g_vars, 'g_adam'), expected):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-9)
    assert model.state(sess)[2:] == (1, 1)  # one step, not k
    assert losses['mse'] == pytest.approx(np.mean(mse), rel=1e-5)
    assert model.epoch_means(sess, 1)['mse'] == pytest.approx(np.mean(mse), rel=1e-5)
    sums = sess.run(sess.graph.get_collection(tf1.GraphKeys.LOCAL_VARIABLES, 'accumulate'))
    assert len(sums) == len(model.g_vars) + len(model.d_vars)
    assert all(not s.any() for s in sums)  # zeroed for the next step


def test_phase_3_with_d_first_updates_d_on_its_mean_gradient_then_g(tiny_config):
    model, sess = build(ACCUM_STEPS=2, D_FIRST=True)
    micro = feeds(model, 2, seed=1)
    d_each = gradients(sess, model.d_loss, model.d_vars, micro)
    g_before = sess.run(model.g_vars)
    losses = train.train_step(sess, model, 3, micro)
    expected = [(1 - config.BETA1) * np.mean(g, axis=0) for g in zip(*d_each)]
    for got, want in zip(slot_m(sess, model.d_vars, 'd_adam'), expected):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-9)
    assert any(not np.array_equal(a, b) for a, b in zip(g_before, sess.run(model.g_vars)))
    assert set(losses) == {'mse', 'd_loss', 'g_adv'} and model.state(sess)[2:] == (1, 1)


def test_an_epoch_takes_batch_size_times_accum_steps_images_a_step(tiny_config):
    import types
    model, sess = build(ACCUM_STEPS=2)
    images = synthetic.faces(5 * config.BATCH_SIZE, config.IMAGE_SIZE, 4)  # 2 steps of 16, 8 left over
    log = types.SimpleNamespace(scalars=lambda step, values: None)
    run = train.Run(sess, model, images, types.SimpleNamespace(signal=None), log, lambda: None)
    means = train.run_epoch(run, 1, 0, 0)
    assert model.state(sess)[2:] == (2, 2) and np.isfinite(means['mse'])
