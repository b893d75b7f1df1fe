"""The adversarial half as the paper builds it, each detail a config.py switch that does what it
says: D's nonlinear head, D updated before G, the real images' own holes, the loss scale."""
import os
import types

import numpy as np
import pytest
import tensorflow as tf

import config
import train
from glcic import data, synthetic
from conftest import tiny_graph

tf1 = tf.compat.v1


def build(**switches):
    """A tiny training graph with `switches` set, initialised, its mean pixel 0: (model, session)."""
    model, sess = tiny_graph(seed=1, **switches)
    sess.run(model.set_mean_pixel, {model.mean_pixel_value: np.zeros(3)})
    return model, sess


def batch(seed=0):
    rng = np.random.RandomState(seed)
    images = synthetic.faces(config.BATCH_SIZE, config.IMAGE_SIZE, seed)
    masks, corners = data.sample_holes(rng, config.BATCH_SIZE)
    return images, masks, corners


@pytest.mark.parametrize('relu', [True, False])
def test_d_output_is_linear_in_the_branch_outputs_only_without_the_relu(tiny_config, relu):
    model, sess = build(D_FC_RELU=relu)
    graph = sess.graph
    branches = [graph.get_tensor_by_name(f'discriminator/{b}/fc/add:0') for b in ('global', 'local')]
    logits = model.real_logits  # the first pass of D, whose tensors are named discriminator/...
    feed = model.feed(*batch())
    u = sess.run(branches, feed)
    rng = np.random.RandomState(0)
    v = [rng.randn(*a.shape).astype(np.float32) for a in u]
    mid = [(a + b) / 2 for a, b in zip(u, v)]

    def head(values):  # D's logits with the two FC-1024 outputs replaced by `values`
        return sess.run(logits, {**feed, **dict(zip(branches, values))})

    gap = np.abs(head(mid) - (head(u) + head(v)) / 2).max()
    if relu:
        assert gap > 1e-3
    else:
        assert gap < 1e-4  # FC-1024 -> concat -> FC-1 is one affine map


@pytest.mark.parametrize('first', [True, False])
def test_d_first_makes_g_answer_to_the_updated_d(tiny_config, tmp_path, first):
    """Phase 3's g_adv equals the verdict of D after a D-only step (phase 2) from the same start
    when D_FIRST; the verdict of the D before it otherwise."""
    model, sess = build(D_FIRST=first)
    feed = model.feed(*batch())
    with sess.graph.as_default():
        saver = tf1.train.Saver()
    start = saver.save(sess, os.path.join(tmp_path, 'start'))

    def verdict():  # g_adv of the current D, computed outside any train op
        logits = sess.run(model.fake_logits, feed)
        return float(np.mean(np.logaddexp(0.0, -logits)))  # cross-entropy with label 1

    before = verdict()
    _, trained = sess.run([model.train_ops[3], model.g_adv], feed)
    saver.restore(sess, start)
    sess.run(model.train_ops[2], feed)  # the same D update, without G's
    after = verdict()
    assert abs(before - after) > 1e-3  # the D step changed D's verdict: the test can tell
    expected, other = (after, before) if first else (before, after)
    assert trained == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert abs(trained - other) > 1e-3


def test_real_patches_are_cut_at_the_corners_fed_for_them(tiny_config):
    model, sess = build(REAL_OWN_HOLES=True)
    images, masks, corners = batch()
    shifted = (corners + 7) % (config.IMAGE_SIZE - config.LOCAL_SIZE + 1)
    same = sess.run(model.d_loss, model.feed(images, masks, corners))
    again = sess.run(model.d_loss, model.feed(images, masks, corners, corners))
    moved = sess.run(model.d_loss, model.feed(images, masks, corners, shifted))
    assert same == again and abs(moved - same) > 1e-6


@pytest.mark.parametrize('own', [True, False])
def test_the_loop_draws_the_real_patches_own_holes_independently(tiny_config, own):
    config.set_values({'REAL_OWN_HOLES': own})
    fed = []
    model = types.SimpleNamespace(
        train_ops={3: 'step'}, losses={3: {'mse': 'mse'}}, state=lambda sess: (3, 0, 0, 0),
        feed=lambda images, masks, corners, real_corners: fed.append((masks, corners, real_corners)),
        epoch_means=lambda sess, phase: {})
    session = types.SimpleNamespace(run=lambda fetches, feed=None: [None, {'mse': 1.0}])
    log = types.SimpleNamespace(scalars=lambda step, values: None)
    images = np.zeros((20 * config.BATCH_SIZE, config.IMAGE_SIZE, config.IMAGE_SIZE, 3), np.uint8)
    run = train.Run(session, model, images, types.SimpleNamespace(signal=None), log, lambda: None)
    train.run_epoch(run, 3, 0, 0)
    masks = np.concatenate([m for m, _, _ in fed])
    corners = np.concatenate([c for _, c, _ in fed])
    if not own:
        assert all(r is None for _, _, r in fed)  # Model.feed then cuts the real patches at `corners`
        return
    real = np.concatenate([r for _, _, r in fed])
    limit = config.IMAGE_SIZE - config.LOCAL_SIZE
    assert real.shape == corners.shape and real.min() >= 0 and real.max() <= limit
    assert np.mean(np.all(real == corners, axis=1)) < 0.2
    # Independent of the fakes' holes: no correlation between the two sets of corners.
    for axis in (0, 1):
        assert abs(np.corrcoef(real[:, axis], corners[:, axis])[0, 1]) < 0.3
    assert masks.shape[0] == real.shape[0]


def test_mse_scale_weighs_the_mse_against_the_adversarial_loss(tiny_config):
    model, sess = build(MSE_SCALE=0.25, ALPHA=0.5, D_FIRST=False)
    mse, g_adv, g_loss = sess.run([model.mse, model.g_adv, model.g_loss], model.feed(*batch()))
    assert g_loss == pytest.approx(0.25 * mse + 0.5 * g_adv, rel=1e-6)


def test_d_loss_is_the_plain_cross_entropy(tiny_config):
    model, sess = build(ALPHA=0.5, D_FIRST=False)
    feed = model.feed(*batch())
    real, fake, d_loss = sess.run([model.real_logits, model.fake_logits, model.d_loss], feed)
    expected = np.mean(np.logaddexp(0.0, -real)) + np.mean(np.logaddexp(0.0, fake))
    assert d_loss == pytest.approx(expected, rel=1e-5)
