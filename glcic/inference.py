"""Trained completion networks: restore them, complete images of any size.

test.py and other front ends share this: the test set's batches and a photo at its own
resolution go through the same graph, restored from the checkpoints backup.trained() finds
(or from the shipped model).
"""
import cv2
import numpy as np
import tensorflow as tf

import config
import network
from glcic import backup, blending, data, evaluate, graphs, replicas, shipped
from glcic.errors import UserError

tf1 = tf.compat.v1
MAX_PIXELS = 4_000_000  # larger photos need --resize: the activations would need many GB


class Networks:
    """One graph, one Saver and one session per checkpoint, so a batch goes through each in turn."""

    def __init__(self, checkpoints, batch_stats=False, bfloat16=False):
        """checkpoints: {name: path}; batch_stats: also build the batch-statistics completion;
        bfloat16: complete in bfloat16 (graphs.Inference)."""
        self.graph = tf.Graph()
        self.sessions, self.info = {}, {}
        with self.graph.as_default():
            self.model = graphs.Inference(batch_stats=batch_stats, bfloat16=bfloat16)
            saver = tf1.train.Saver(self.model.variables)
            try:
                for name, path in checkpoints.items():
                    self.sessions[name] = sess = replicas.make_session()
                    if name == shipped.NAME:
                        shipped.restore(sess, self.model.variables, path)
                    else:
                        backup.restore(sess, saver, path)
                    phase, epoch, _, step = self.model.state(sess)
                    self.info[name] = {'path': path, 'phase': phase, 'epoch': epoch, 'step': step}
            except BaseException:
                self.close()
                raise

    def label(self, name):
        """Column title: what this checkpoint's completion network has been trained with."""
        if name == shipped.NAME:
            return 'shipped model'
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


def work_size(height, width, resize=None):
    """(height, width) the network completes a photo at: its own, or the short side scaled to resize."""
    if not resize:
        return height, width
    scale = resize / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def check_size(height, width, resize=None, what='image'):
    """Raise UserError if a height x width photo cannot be completed (with --resize resize).

    Needs neither the photo's pixels nor a network, so callers check every photo first.
    """
    work_h, work_w = work_size(height, width, resize)
    if min(work_h, work_w) < network.SIZE_STEP:
        scaled = f' (with --resize {resize}: {work_w}x{work_h})' if resize else ''
        raise UserError(f'{what} is {width}x{height} px{scaled}; need at least {network.SIZE_STEP} px a side')
    if work_h * work_w > MAX_PIXELS:
        if resize:
            raise UserError(f'{what} is {width}x{height} px; with --resize {resize} it would be '
                            f'{work_w}x{work_h}, too large to complete: use a smaller --resize')
        raise UserError(f'{what} is {width}x{height} px, too large to complete at full size; '
                        f'add --resize {config.IMAGE_SIZE * 4} (short side in px)')


def complete_photo(nets, name, photo, hole, resize=None, blend=False):
    """Complete one photo at its own size; pixels outside the hole come back unchanged.

    Args: photo uint8 [H,W,3]; hole bool [H,W]; resize: complete with the short
    side scaled to this many px and scale the hole's pixels back up.
    """
    check_size(*hole.shape, resize)  # before resizing: --resize 100000 must not allocate GBs
    masked = evaluate.hide_holes(photo[None], hole[None, ..., None])[0]
    work, work_hole = masked, hole
    if resize:
        height, width = work_size(*hole.shape, resize)
        # Telea first, so the hole's zeros do not bleed into its known neighbours when resampling.
        prefilled = evaluate.telea(masked[None], hole[None, ..., None])[0]
        shrink = cv2.INTER_AREA if resize < min(hole.shape) else cv2.INTER_LINEAR
        work = cv2.resize(prefilled, (width, height), interpolation=shrink)
        work_hole = cv2.resize(hole.astype(np.float32), (width, height), interpolation=shrink) > 0
    height, width = work_hole.shape
    # The generator is fully convolutional: pad to a multiple of 4, complete, crop back.
    # The mask is padded the same way, so the reflected hole is a hole, not black known pixels.
    step = network.SIZE_STEP
    padded_h, padded_w = -(-height // step) * step, -(-width // step) * step
    image = _pad(work, padded_h, padded_w)[None]
    mask = _pad(work_hole.astype(np.float32), padded_h, padded_w)[None, ..., None]
    completed = nets.complete(name, image, mask)[0, :height, :width]
    if resize:
        completed = cv2.resize(completed, (hole.shape[1], hole.shape[0]), interpolation=cv2.INTER_CUBIC)
    completed = np.where(hole[..., None], completed, masked)
    if blend:
        completed = blending.blend(masked[None], completed[None], hole[None, ..., None])[0]
    return completed

