"""train.py's loop: window means, epoch means and the stop rule stay right across a resume."""
import types

import numpy as np
import pytest
import tensorflow as tf

import config
import synthetic
import train
from conftest import tiny_graph

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


def real_run(checkpoint=None, interrupt=None):
    """The tiny training graph in a train.Run, restored from `checkpoint` or fresh (seeded);
    and a function that saves it to a path."""
    model, sess = tiny_graph(seed=0)
    with sess.graph.as_default():
        saver = tf1.train.Saver()
    if checkpoint:
        saver.restore(sess, checkpoint)
    images = synthetic.faces(6 * config.BATCH_SIZE, config.IMAGE_SIZE, 3)
    log = types.SimpleNamespace(scalars=lambda step, values: None)
    run = train.Run(sess, model, images, interrupt or types.SimpleNamespace(signal=None), log, lambda: None)
    return run, lambda path: saver.save(sess, str(path))


def test_epoch_means_after_a_resume_cover_every_step_of_the_epoch(tiny_config, tmp_path):
    """Mid-epoch, and a Ctrl-C on the epoch's last step: the resumed epoch's means are the
    uninterrupted epoch's, not those of the steps after the resume (or none at all)."""
    first, save = real_run()
    start = save(tmp_path / 'start')
    whole = train.run_epoch(first, 1, 0, 0)  # 6 steps
    for stop in (2, 6):
        run, save = real_run(start, StopAfter(stop))
        partial = train.run_epoch(run, 1, 0, 0)
        assert run.model.state(run.sess)[2] == stop
        resumed, _ = real_run(save(tmp_path / f'stopped-{stop}'))
        means = train.run_epoch(resumed, 1, 0, stop)
        assert means['mse'] == pytest.approx(whole['mse'], rel=1e-6), stop
        if stop < 6:
            assert partial['mse'] != pytest.approx(whole['mse'], rel=1e-3)  # the test can tell
