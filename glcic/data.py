"""Images, holes, batches and random streams, shared by train.py, test.py and bench.py.

Images are uint8 [N,S,S,3] RGB on disk; the networks see float32 in [-1, 1].
"""
import os

import numpy as np

import config
from glcic.errors import UserError

# Every random draw comes from RandomState([SEED, STREAMS[name], *index]): no two uses share
# numbers, and a resumed run draws what the uninterrupted one would have.
STREAMS = {
    'pick': 1,          # to_npy.py: which photos, in which order
    'shuffle': 2,       # train.py: the order of an epoch, index (epoch,)
    'step': 3,          # train.py: one step's flips and holes, index (epoch, step)
    'recalibrate': 4,   # batch-norm re-estimation batches before each save
    'samples': 5,       # holes of the fixed images in output/epoch_NNNN.png
    'test_holes': 6,    # test.py's holes on the test split
    'val_holes': 7,     # train.py's holes on the validation split (the stop rule's scores)
}


def to_float(images):
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return np.asarray(images, np.float32) / 127.5 - 1.0


def to_uint8(images):
    """float [-1, 1] -> uint8 [0, 255], rounded and clipped."""
    return np.clip(np.rint((np.asarray(images) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def stream(name, *index):
    """The np.random.RandomState of a named stream (STREAMS) at an index such as (epoch, step)."""
    return np.random.RandomState([config.SEED, STREAMS[name], *index])


def sample_holes(rng, count, size=None):
    """Draw one rectangular hole per image and the local discriminator's patch around it.

    Args: rng, an np.random.RandomState; count images; size of the square
    image (config.IMAGE_SIZE by default). Hole sides come from HOLE_MIN and
    HOLE_MAX, the hole lies anywhere in the image; the LOCAL_SIZE patch is
    centred on it where the border allows (LOCAL_CENTRED, the paper) or put at
    random anywhere it still holds the whole hole. The holes do not depend on
    LOCAL_CENTRED, only the patches do.
    Returns: masks float32 [count,size,size,1] with 1 in the hole, and the
    patches' top-left corners int32 [count,2] as (y, x).
    """
    size = size or config.IMAGE_SIZE
    local = config.LOCAL_SIZE
    sides = rng.randint(config.HOLE_MIN, config.HOLE_MAX + 1, size=(count, 2))
    tops = rng.randint(0, size - sides + 1)  # (y, x) of each hole
    if config.LOCAL_CENTRED:
        corners = np.clip(tops + sides // 2 - local // 2, 0, size - local)
    else:
        # Corners that keep the hole inside the patch and the patch inside the image.
        low = np.maximum(0, tops + sides - local)
        high = np.minimum(tops, size - local)
        corners = low + (rng.rand(count, 2) * (high - low + 1)).astype(int)
    masks = np.zeros((count, size, size, 1), np.float32)
    for mask, (y, x), (h, w) in zip(masks, tops, sides):
        mask[y:y + h, x:x + w] = 1.0
    return masks, corners.astype(np.int32)


def test_holes(count):
    """The fixed holes of the test split, the same for every run and checkpoint: masks, corners."""
    return sample_holes(stream('test_holes'), count)


def npy_path(split):
    return os.path.join(config.NPY_DIR, f'x_{split}.npy')


def load_images(path):
    """Open an image array written by to_npy.py without reading it into memory.

    Returns: uint8 [N,IMAGE_SIZE,IMAGE_SIZE,3] (memory-mapped).
    Raises UserError with the way out when the file is missing or unusable.
    """
    if not os.path.exists(path):
        raise UserError(f'{path} not found: put photos in {config.IMAGE_DIR}/ and run '
                        f'python to_npy.py (or python to_npy.py --demo for synthetic faces)')
    try:
        images = np.load(path, mmap_mode='r', allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise UserError(f'{path} is not a readable .npy file ({error}); run python to_npy.py again')
    size = config.IMAGE_SIZE
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise UserError(f'{path} holds {images.dtype} {images.shape}; expected uint8 [N,{size},{size},3] '
                        f'as written by to_npy.py')
    if images.shape[1:3] != (size, size):
        raise UserError(f'{path} holds {images.shape[1]}x{images.shape[2]} images but IMAGE_SIZE={size}; '
                        f'run python to_npy.py --IMAGE_SIZE={size} or set IMAGE_SIZE={images.shape[1]}')
    if len(images) == 0:
        raise UserError(f'{path} holds no images; run python to_npy.py again')
    return images


def mean_rgb(images):
    """Mean of each channel of uint8 [N,H,W,3], 0-255; summing over images first is 20x faster."""
    per_pixel = np.asarray(images).sum(axis=0, dtype=np.uint64).reshape(-1, 3)
    return per_pixel.sum(axis=0) / (per_pixel.shape[0] * max(1, len(images)))


def mean_rgb_listed(images):
    """mean_rgb as meta.json lists it: three numbers, 2 decimals."""
    return [round(float(v), 2) for v in mean_rgb(images)]


def mean_pixel(images, limit=2000):
    """Mean RGB of (up to `limit`) images, in [-1, 1]: the hole fill of the mask-channel input."""
    step = max(1, len(images) // limit)
    return to_float(mean_rgb(images[::step]))


def batch(images, index, rng=None):
    """Gather images[index] (sorted reads are kind to the memory map); flip each with p=0.5 if rng."""
    order = np.argsort(index)
    out = np.empty((len(index),) + images.shape[1:], np.uint8)
    out[order] = images[np.asarray(index)[order]]
    if rng is not None:
        flip = rng.rand(len(out)) < 0.5
        out[flip] = out[flip, :, ::-1]
    return out
