"""train.py's loop: window means, epoch means and the stop rule stay right across a resume."""
import types

import numpy as np

import config
import train


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
