"""Trained completion networks: find the checkpoints, restore them, complete images of any size.

test.py and other front ends share this: the test set's batches and a photo at its own
resolution go through the same graph, restored from BACKUP_DIR.
"""
import cv2
import numpy as np
import tensorflow as tf

import backup
import config
import data
import evaluate
import network
from errors import UserError

tf1 = tf.compat.v1
MAX_PIXELS = 4_000_000  # larger photos need --resize: the activations would need many GB
SIZE_STEP = 4  # the completion network halves the size twice, so H and W must divide by 4


def find_checkpoints(which=None):
    """{'pretrained': path, 'latest': path} of the checkpoints that exist (only `which` if given)."""
    names = [which] if which else [backup.PRETRAINED, backup.LATEST]
    found = {name: backup.find(name) for name in names}
    found = {name: path for name, path in found.items() if path}
    if not found:
        what = f'no {which} checkpoint' if which else 'no trained model'
        raise UserError(f'{what} in {config.BACKUP_DIR}/: train first with python train.py '
                        f'(e.g. python to_npy.py --demo 200 && python train.py)')
    return found


class Networks:
    """One graph, one Saver and one session per checkpoint, so a batch goes through each in turn."""

    def __init__(self, checkpoints, batch_stats=False):
        """checkpoints: {name: path}; batch_stats: also build the batch-statistics completion."""
        self.graph = tf.Graph()
        self.sessions, self.info = {}, {}
        with self.graph.as_default():
            self.model = network.Model(training=False, batch_stats=batch_stats)
            saver = tf1.train.Saver(self.model.variables)
            try:
                for name, path in checkpoints.items():
                    self.sessions[name] = sess = network.make_session()
                    backup.restore(sess, saver, path)
                    phase, epoch, _, step = self.model.state(sess)
                    self.info[name] = {'path': path, 'phase': phase, 'epoch': epoch, 'step': step}
            except BaseException:
                self.close()
                raise

    def label(self, name):
        """Column title: what this checkpoint's completion network has been trained with."""
        if self.info[name]['phase'] >= 3:
            return 'completion + discriminator'
        return 'completion only' if name == backup.PRETRAINED else 'completion only (latest)'

    def mean_pixel(self):
        """The training set's mean colour saved in the checkpoint, uint8 [3]."""
        sess = next(iter(self.sessions.values()))
        return data.to_uint8(sess.run(self.model.mean_pixel))

    def complete(self, name, images, masks, batch_stats=False):
        try:
            return self.model.complete(self.sessions[name], images, masks, batch_stats)
        except tf.errors.ResourceExhaustedError:
            raise UserError(f'out of memory completing {images.shape[1]}x{images.shape[2]} images: '
                            f'use --BATCH_SIZE={max(1, config.BATCH_SIZE // 2)} or a smaller --resize')

    def close(self):
        for sess in self.sessions.values():
            sess.close()


def _pad(a, height, width):
    """Reflect-pad the bottom and right of [H,W,...] to height x width."""
    extra = ((0, height - a.shape[0]), (0, width - a.shape[1])) + ((0, 0),) * (a.ndim - 2)
    return np.pad(a, extra, mode='reflect')


def complete_photo(nets, name, photo, hole, resize=None, blend=False):
    """Complete one photo at its own size; pixels outside the hole come back unchanged.

    Args: photo uint8 [H,W,3]; hole bool [H,W]; resize: complete with the short
    side scaled to this many px and scale the hole's pixels back up.
    """
    masked = evaluate.hide_holes(photo[None], hole[None, ..., None])[0]
    work, work_hole = masked, hole
    if resize:
        scale = resize / min(hole.shape)
        size = (max(1, round(hole.shape[1] * scale)), max(1, round(hole.shape[0] * scale)))
        # Telea first, so the hole's zeros do not bleed into its known neighbours when resampling.
        prefilled = evaluate.telea(masked[None], hole[None, ..., None])[0]
        shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        work = cv2.resize(prefilled, size, interpolation=shrink)
        work_hole = cv2.resize(hole.astype(np.float32), size, interpolation=shrink) > 0
    height, width = work_hole.shape
    if min(height, width) < SIZE_STEP:
        raise UserError(f'image is {width}x{height} px; need at least {SIZE_STEP} px a side')
    if height * width > MAX_PIXELS:
        raise UserError(f'image is {width}x{height} px, too large to complete at full size; '
                        f'add --resize {config.IMAGE_SIZE * 4} (short side in px)')
    # The generator is fully convolutional: pad to a multiple of 4, complete, crop back.
    # The mask is padded the same way, so the reflected hole is a hole, not black known pixels.
    padded_h, padded_w = -(-height // SIZE_STEP) * SIZE_STEP, -(-width // SIZE_STEP) * SIZE_STEP
    image = _pad(work, padded_h, padded_w)[None]
    mask = _pad(work_hole.astype(np.float32), padded_h, padded_w)[None, ..., None]
    completed = nets.complete(name, image, mask)[0, :height, :width]
    if resize:
        completed = cv2.resize(completed, (hole.shape[1], hole.shape[0]), interpolation=cv2.INTER_CUBIC)
    completed = np.where(hole[..., None], completed, masked)
    if blend:
        completed = evaluate.blend(masked[None], completed[None], hole[None, ..., None])[0]
    return completed

