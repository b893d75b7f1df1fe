"""experiments/stop_run.py's verdict: the rule replayed on a run's validation scores, the kept
epoch, and phase 3 against phase 1 alone at equal epochs."""
import os
import sys

import numpy as np

import config
from glcic import stopping

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'experiments'))
import stop_run  # noqa: E402

FACES = 40


def rows(realism_by_epoch, psnr, phase3_from, offset=0.0):
    """loss.csv-and-scores rows: phase 1 before `phase3_from`, phase 3 from it on."""
    out = []
    for epoch, value in enumerate(realism_by_epoch, 1):
        phase = 3 if epoch >= phase3_from else 1
        row = {'epoch': float(epoch), 'phase': float(phase), 'test_realism': value + offset,
               'test_hole_psnr': psnr, 'test_hole_l1': 10.0, 'test_per_image': {'hole_psnr': [psnr + offset] * FACES}}
        if phase == 3:
            row.update(val_realism=value, val_hole_psnr=psnr)
        out.append(row)
    return out


def test_the_verdict_replays_the_rule_and_compares_at_equal_epochs():
    # Realism falls for 12 phase-3 epochs, then stays flat: the rule fires once the last window
    # gained nothing over the best earlier one; the kept epoch is the lowest within the guard.
    realism = [0.95] * 6 + [0.9 - 0.01 * min(i, 12) for i in range(30)]
    main = rows(realism, 20.0, phase3_from=7)
    control = rows([0.95] * 36, 21.0, phase3_from=99)
    phase3 = realism[6:]
    expected = stopping.first_stop(phase3, [20.0] * 30, 20.0, config.STOP_EPOCHS, config.STOP_LOSS)
    assert expected is not None and expected >= 2 * config.STOP_EPOCHS

    text, fires, kept = stop_run.verdict(main, control, 20.0, FACES)

    assert fires == 6 + expected
    assert kept == 6 + 13  # the first epoch at the lowest realism, 0.78
    assert f'after phase-3 epoch {expected} ' in text
    # Equal epochs: phase 3 is 0.17 more realistic (lower) and 1 dB below on the same faces.
    assert 'Realism, phase 3 minus phase 1 alone: -0.170' in text
    assert 'faces: -1.00 dB (95 % bootstrap -1.00 to -1.00)' in text


def test_paired_psnr_interval_covers_the_mean_difference():
    rng = np.random.RandomState(1)
    a = rng.randn(500) * 3 + 20
    b = a + 0.5 + rng.randn(500) * 0.2
    mean, (low, high) = stop_run.paired_psnr(a, b)
    assert abs(mean - np.mean(b - a)) < 1e-12
    assert low < mean < high and high - low < 0.1
