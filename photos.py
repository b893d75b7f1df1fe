"""Image files on disk: find, read and check photos and masks, and write results.

Shared by to_npy.py (folders of photos) and test.py (your own photos and masks).
Arrays are RGB uint8 [H,W,3]; masks are bool [H,W] with True in the hole.
"""
import glob
import os

import cv2
import numpy as np

import atomic
import config
from errors import UserError

EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.gif')  # a GIF gives its first frame


def find_images(src):
    """Sorted paths of image files under src (recursive, symlinks followed).

    A file reached twice (through a symlink or a directory loop) is listed once, so no
    photo can land in both the train and the test split.
    """
    found, seen_dirs, seen_files = [], set(), set()
    for root, subdirs, files in os.walk(src, followlinks=True):
        subdirs.sort()
        if os.path.realpath(root) in seen_dirs:
            subdirs.clear()
            continue
        seen_dirs.add(os.path.realpath(root))
        for name in sorted(files):
            path = os.path.join(root, name)
            if name.lower().endswith(EXTENSIONS) and os.path.realpath(path) not in seen_files:
                seen_files.add(os.path.realpath(path))
                found.append(path)
    return sorted(found)


def image_files(folder):
    """Sorted image files directly inside folder (not its subfolders)."""
    return sorted(p for p in glob.glob(os.path.join(glob.escape(folder), '*'))
                  if p.lower().endswith(EXTENSIONS))


def square(img, size):
    """Centre-crop [H,W,C] to a square and resize it to size x size."""
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = img[top:top + side, left:left + side]
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)


def read_image(path, what='image'):
    """Decode any image file OpenCV reads: RGB uint8 [H,W,3], or gray [H,W] if what is 'mask'."""
    if not os.path.isfile(path):
        raise UserError(f'{what} {path} not found')
    raw = np.fromfile(path, np.uint8)
    flag = cv2.IMREAD_GRAYSCALE if what == 'mask' else cv2.IMREAD_COLOR
    img = cv2.imdecode(raw, flag) if raw.size else None
    if img is None:
        raise UserError(f'{what} {path} is not a readable image (use .png or .jpg)')
    return img if img.ndim == 2 else img[..., ::-1]


def read_mask(path, shape, image_path):
    """A mask image of the photo's size; pixels brighter than 127 are the hole."""
    gray = read_image(path, 'mask')
    if gray.shape != shape[:2]:
        raise UserError(f'mask {path} is {gray.shape[1]}x{gray.shape[0]} but image {image_path} is '
                        f'{shape[1]}x{shape[0]}; draw the mask at the image\'s size')
    return gray > 127


def box_mask(text, shape):
    """--box x,y,w,h -> bool [H,W] with the rectangle set."""
    try:
        x, y, w, h = (int(v) for v in text.split(','))
    except ValueError:
        raise UserError(f'--box {text}: expected four integers x,y,w,h (e.g. --box 40,60,32,24)')
    height, width = shape[:2]
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise UserError(f'--box {text} does not fit the {width}x{height} image: need w, h > 0, '
                        f'x + w <= {width} and y + h <= {height}')
    hole = np.zeros(shape[:2], bool)
    hole[y:y + h, x:x + w] = True
    return hole


def check_hole(hole, where):
    if not hole.any():
        raise UserError(f'{where} has no hole: paint the area to fill white (> 127) on black')
    if hole.all():
        raise UserError(f'{where} covers the whole image: leave some of the photo visible '
                        f'for the network to complete from')


def write_image(path, rgb):
    """Encode by the file's extension and write atomically (a failed write keeps the old file)."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    ok, encoded = cv2.imencode(os.path.splitext(path)[1], np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise UserError(f'could not encode {path}')
    atomic.write_bytes(path, encoded.tobytes())


def jobs(image, mask, box, out):
    """[(image path, mask path or None, output path)] for --image FILE or --image DIR.

    Args: the --image, --mask, --box and --out values (out may be None: under OUTPUT_DIR/test).
    """
    if os.path.isdir(image):
        images = image_files(image)
        if not images:
            raise UserError(f'no images ({", ".join(EXTENSIONS)}) in {image}/')
        if mask and not os.path.isdir(mask):
            raise UserError(f'--image {image} is a folder, so --mask must be a folder of '
                            f'masks named like the images')
        masks = {}
        if mask:
            masks = {os.path.splitext(os.path.basename(p))[0]: p for p in image_files(mask)}
        out_dir = out or os.path.join(config.OUTPUT_DIR, 'test', 'completed')
        found = []
        for path in images:
            stem = os.path.splitext(os.path.basename(path))[0]
            if mask and stem not in masks:
                raise UserError(f'no mask for {path} in {mask}/ (expected {stem}.png)')
            found.append((path, masks.get(stem), os.path.join(out_dir, f'{stem}.png')))
        return found
    if mask and os.path.isdir(mask):
        raise UserError(f'--mask {mask} is a folder; give a mask file for --image {image}')
    stem = os.path.splitext(os.path.basename(image))[0]
    out = out or os.path.join(config.OUTPUT_DIR, 'test', f'{stem}_completed.png')
    if os.path.isdir(out):
        out = os.path.join(out, f'{stem}_completed.png')
    return [(image, mask, out)]


def load_jobs(image, mask, box, out):
    """[(photo, hole, output path)], every file read and checked before any network is built."""
    work = []
    for image_path, mask_path, out_path in jobs(image, mask, box, out):
        if not cv2.haveImageWriter(out_path):
            raise UserError(f'cannot write {out_path}: use a .png or .jpg file name')
        photo = read_image(image_path)
        if mask_path:
            hole, where = read_mask(mask_path, photo.shape, image_path), f'mask {mask_path}'
        else:
            hole, where = box_mask(box, photo.shape), f'--box {box}'
        check_hole(hole, where)
        work.append((photo, hole, out_path))
    return work
