"""When phase 3 ends: when the completions stop getting more realistic, or start losing fidelity.

After each phase-3 epoch train.py scores a fixed validation set: realism (glcic/realism.py, lower
is better) and hole PSNR. The rule compares windows of STOP_EPOCHS epochs, not single epochs,
since one epoch's score carries the critic's noise (about 0.035 SD at 300 validation faces).
"""
import numpy as np

import config
from glcic import data, evaluate, realism

PSNR_GUARD = 0.5  # dB: phase 3 may cost at most this much hole PSNR against phase 1's end


def stop_rule(realism, hole_psnr, baseline_psnr, window, least_gain):
    """Why phase 3 ends after its latest epoch, or None to go on.

    realism, hole_psnr: the validation scores of each phase-3 epoch so far, oldest first.
    baseline_psnr: the hole PSNR at the start of phase 3 (phase 1's network). Ends when the
    mean realism of the last `window` epochs is not lower by more than `least_gain` than that
    of every earlier window (the last chance to improve is spent), or when the last window's
    mean hole PSNR is more than PSNR_GUARD dB below baseline_psnr (fidelity traded for nothing
    the rule can see). None before 2 * window epochs.
    """
    if len(realism) < 2 * window:
        return None
    means = np.convolve(realism, np.ones(window) / window, mode='valid')  # every window's mean
    recent, best_before = means[-1], means[:-window].min()
    psnr = float(np.mean(hole_psnr[-window:]))
    if psnr < baseline_psnr - PSNR_GUARD:
        return (f'the mean hole PSNR of the last {window} epochs, {psnr:.2f} dB, is more than '
                f'{PSNR_GUARD} dB below phase 1\'s {baseline_psnr:.2f} dB')
    if best_before - recent <= least_gain:
        return (f'the mean realism of the last {window} epochs, {recent:.3f}, is not lower than the best '
                f'earlier {window}-epoch mean, {best_before:.3f}, by more than {least_gain:g}')
    return None


def best_epoch(realism, hole_psnr, baseline_psnr):
    """Index of the phase-3 epoch to keep: the most realistic one within the PSNR guard, or None."""
    allowed = [i for i, psnr in enumerate(hole_psnr) if psnr >= baseline_psnr - PSNR_GUARD]
    return min(allowed, key=lambda i: realism[i]) if allowed else None


def first_stop(realism, hole_psnr, baseline_psnr, window, least_gain):
    """The phase-3 epoch (1-based) after which stop_rule fires on a whole series, or None."""
    for epoch in range(1, len(realism) + 1):
        if stop_rule(realism[:epoch], hole_psnr[:epoch], baseline_psnr, window, least_gain):
            return epoch
    return None


class Validation:
    """The validation faces with their fixed holes, scored by a completion function."""

    def __init__(self, images):
        self.images = np.asarray(images)
        self.masks, _ = data.sample_holes(data.stream('val_holes'), len(self.images))
        self.real = realism.features(self.images, self.masks)

    def scores(self, complete):
        """(realism, mean hole PSNR) of complete(uint8 images, masks) -> uint8 completions."""
        size = config.BATCH_SIZE
        filled = np.concatenate([complete(self.images[i:i + size], self.masks[i:i + size])
                                 for i in range(0, len(self.images), size)])
        return (realism.score(realism.features(filled, self.masks), self.real),
                float(evaluate.hole_psnr(filled, self.images, self.masks).mean()))
