"""Image files on disk: find, read and check photos and masks, and write results.

Shared by to_npy.py (folders of photos) and test.py (your own photos and masks).
Arrays are RGB uint8 [H,W,3]; masks are bool [H,W] with True in the hole.
"""
import functools
import glob
import os
import stat
import struct
import tempfile

import cv2
import numpy as np

import config
from glcic import atomic
from glcic.errors import UserError

EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.gif')  # a GIF gives its first frame
MAX_PIXELS = 100_000_000  # larger images are refused from their header, never decoded into GBs
MAX_UNKNOWN_BYTES = 50_000_000  # largest file decoded whose header gives no size (other formats)
JPEG_MAX_SEGMENTS = 10_000  # segments searched for a JPEG's frame header before giving up
UNREADABLE = 'not a readable image'  # why a file OpenCV cannot decode is skipped
HOLE_ABOVE = 127  # mask pixels brighter than this are the hole (white on black)
EXACT_OUTPUTS = ('.png', '.webp', '.bmp', '.tif', '.tiff')  # results keep every pixel (OpenCV's WebP is lossless)
JPEG_OUTPUTS = ('.jpg', '.jpeg')  # written with a note: JPEG changes the known pixels a little


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


class Unusable(Exception):
    """An image file that is not decoded; str() says why, to follow 'is' ('too large (...)')."""


def _png_size(head):
    if head.startswith(b'\x89PNG\r\n\x1a\n') and head[12:16] == b'IHDR':
        return struct.unpack('>II', head[16:24])
    return None


def _gif_size(head):
    if head[:6] in (b'GIF87a', b'GIF89a'):
        return struct.unpack('<HH', head[6:10])
    return None


def _bmp_size(head):
    if head[:2] != b'BM' or len(head) < 26:
        return None
    if struct.unpack('<I', head[14:18])[0] == 12:  # the old OS/2 header: 16-bit sides
        return struct.unpack('<HH', head[18:22])
    width, height = struct.unpack('<ii', head[18:26])
    return abs(width), abs(height)  # a negative height means rows stored top-down


def _webp_size(head):
    if head[:4] != b'RIFF' or head[8:12] != b'WEBP':
        return None
    chunk = head[12:16]
    if chunk == b'VP8 ' and head[23:26] == b'\x9d\x01\x2a':  # lossy: 14-bit sides after the start code
        width, height = struct.unpack('<HH', head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b'VP8L' and head[20:21] == b'\x2f':  # lossless: 14-bit sides minus one
        bits = struct.unpack('<I', head[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b'VP8X':  # extended: 24-bit canvas sides minus one
        return int.from_bytes(head[24:27], 'little') + 1, int.from_bytes(head[27:30], 'little') + 1
    return None


def _jpeg_size(f):
    """The frame header's sides, found by walking the segments from the start of the file."""
    f.seek(2)
    for _ in range(JPEG_MAX_SEGMENTS):
        marker = f.read(2)
        while marker == b'\xff\xff':  # fill bytes before a marker
            marker = marker[1:] + f.read(1)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        code = marker[1]
        if code == 0x01 or 0xD0 <= code <= 0xD8:  # markers without a length
            continue
        if code in (0xD9, 0xDA):  # end of image or scan data before any frame header
            return None
        field = f.read(2)
        length = struct.unpack('>H', field)[0] if len(field) == 2 else 0
        if length < 2:
            return None
        if 0xC0 <= code <= 0xCF and code not in (0xC4, 0xC8, 0xCC):  # SOF0-15 but DHT, JPG, DAC
            frame = f.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack('>xHH', frame)
            return (width, height) if height else None  # 0: the height comes later (DNL)
        f.seek(length - 2, os.SEEK_CUR)
    return None


def image_size(f):
    """(width, height) from the header of an open PNG, JPEG, GIF, BMP or WebP file, without decoding.

    Returns None for other formats and for headers that give no size. The sides are as stored,
    before any EXIF rotation (the pixel count is the same either way). Not Pillow's Image.open:
    it finds no size in a JPEG that ends before its scan or in a WebP without a frame (the bombs
    of tests/test_user_files.py), and it opens a WebP by building a decoder for the whole canvas.
    """
    f.seek(0)
    head = f.read(32)
    if head.startswith(b'\xff\xd8'):
        return _jpeg_size(f)
    for parse in (_png_size, _gif_size, _bmp_size, _webp_size):
        size = parse(head)
        if size:
            return size
    return None


def bit_depth(path):
    """Bits a channel of a PNG file (1 to 16, from its header); 8 for other files, which
    OpenCV reads in 8 bits as they are."""
    try:
        with _open_regular(path) as f:
            head = f.read(25)
    except (OSError, Unusable):
        return 8
    return head[24] if _png_size(head) and len(head) == 25 else 8


def _open_regular(path):
    """Open a file for binary reading, refusing FIFOs, devices and folders without blocking on them."""
    fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0) | getattr(os, 'O_BINARY', 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unusable('not a regular file')
        return os.fdopen(fd, 'rb')
    except BaseException:
        os.close(fd)
        raise


def decode(path, flag=cv2.IMREAD_COLOR, check=None):
    """Decode a regular image file whose header says it fits in memory.

    Args: flag for cv2.imdecode; check(width, height), optional, raises to refuse a size: it
    is called with the header's size before decoding and with the decoded size after.
    Returns: the decoded array as OpenCV gives it (BGR [H,W,3] or gray [H,W]).
    Raises: Unusable (empty, special file, too large, not an image); OSError if unreadable.
    """
    def check_pixels(width, height):
        if width * height > MAX_PIXELS:
            raise Unusable(f'too large ({width}x{height} px; the limit is {MAX_PIXELS:,})')
        if check:
            check(width, height)

    with _open_regular(path) as f:
        length = os.fstat(f.fileno()).st_size
        if length == 0:
            raise Unusable('empty')
        size = image_size(f)
        if size:
            check_pixels(*size)
        elif length > MAX_UNKNOWN_BYTES:
            raise Unusable(f'too large to decode unchecked ({length:,} bytes, and no size in '
                           f'its header; the limit is {MAX_UNKNOWN_BYTES:,})')
        f.seek(0)
        raw = np.fromfile(f, np.uint8)
    try:
        img = cv2.imdecode(raw, flag)
    except cv2.error:  # OpenCV's own limits (sides, pixels) raise instead of returning None
        img = None
    if img is None:
        raise Unusable(UNREADABLE)
    check_pixels(img.shape[1], img.shape[0])
    return img


def read_image(path, what='image', check=None):
    """Decode any image file OpenCV reads: RGB uint8 [H,W,3], or gray [H,W] if what is 'mask'.

    check(width, height), optional: raises UserError to refuse a size; it sees the header's
    size before decoding (see decode).
    """
    if not os.path.exists(path):
        raise UserError(f'{what} {path} not found')
    flag = cv2.IMREAD_GRAYSCALE if what == 'mask' else cv2.IMREAD_COLOR
    try:
        img = decode(path, flag, check)
    except Unusable as error:
        hint = ' (use .png or .jpg)' if str(error) == UNREADABLE else ''
        raise UserError(f'{what} {path} is {error}{hint}')
    except OSError as error:
        raise UserError(f'{what} {path} cannot be read ({error.strerror or error})')
    return img if img.ndim == 2 else img[..., ::-1]


def transparent(path, shape):
    """The pixels an image file leaves transparent (alpha below half): bool [H,W] of the photo's
    shape, or None if it has no alpha channel or no transparent pixel. Call after read_image."""
    try:
        img = decode(path, cv2.IMREAD_UNCHANGED)
    except (Unusable, OSError):
        return None  # read_image has read it: nothing changed but the file under our feet
    if img.ndim != 3 or img.shape[2] != 4:
        return None
    alpha = img[..., 3]
    hole = alpha < (0.5 if alpha.dtype.kind == 'f' else (int(np.iinfo(alpha.dtype).max) + 1) // 2)
    if not hole.any():
        return None
    if hole.shape != tuple(shape[:2]):  # the colours were turned by the file's EXIF orientation
        raise UserError(f'the transparent pixels of {path} do not line up with the photo as its EXIF '
                        f'orientation turns it; give the hole with --mask')
    return hole


def read_mask(path, shape, image_path):
    """A mask image of the photo's size; pixels brighter than 127 are the hole."""
    def same_size(width, height):  # the header's sides may be the EXIF-rotated ones
        if sorted((width, height)) != sorted(shape[:2]):
            raise UserError(f'mask {path} is {width}x{height} but image {image_path} is '
                            f'{shape[1]}x{shape[0]}; draw the mask at the image\'s size')

    gray = read_image(path, 'mask', same_size)
    if gray.shape != shape[:2]:
        raise UserError(f'mask {path} is {gray.shape[1]}x{gray.shape[0]} but image {image_path} is '
                        f'{shape[1]}x{shape[0]}; draw the mask at the image\'s size')
    return gray > HOLE_ABOVE


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
    return rectangle(x, y, w, h, shape)


def rectangle(x, y, w, h, shape):
    """bool [H,W] with the w x h rectangle at (x, y) set."""
    hole = np.zeros(shape[:2], bool)
    hole[y:y + h, x:x + w] = True
    return hole


def check_hole(hole, where):
    if not hole.any():
        raise UserError(f'{where} has no hole: paint the area to fill white (> {HOLE_ABOVE}) on black')
    if hole.all():
        raise UserError(f'{where} covers the whole image: leave some of the photo visible '
                        f'for the network to complete from')


def _exists_message(path):
    return f'{path} exists; add --overwrite to replace it, or choose another --out'


def write_image(path, rgb, overwrite=False):
    """Encode by the file's extension and write atomically (a failed write keeps the old file).

    overwrite=False: refuse to replace a file that exists, even one made since the last check.
    """
    ok, encoded = cv2.imencode(os.path.splitext(path)[1], np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise UserError(f'could not encode {path}')
    if not overwrite and os.path.lexists(path):
        raise UserError(_exists_message(path))
    try:
        os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
        atomic.write_bytes(path, encoded.tobytes())
    except OSError as error:
        kept = 'the old file is unchanged' if os.path.lexists(path) else 'nothing was written'
        raise UserError(f'could not write {path} ({error.strerror or error}); {kept}')


def _same_folder(a, b):
    return os.path.realpath(a) == os.path.realpath(b) or (
        os.path.isdir(a) and os.path.isdir(b) and os.path.samefile(a, b))


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
        for path in image_files(mask) if mask else []:
            masks.setdefault(os.path.splitext(os.path.basename(path))[0], []).append(path)
        out_dir = out or os.path.join(config.OUTPUT_DIR, 'test', 'completed')
        for folder, what in ((image, 'photos'), (mask, 'masks')):
            # Results there would replace same-named inputs and be read as inputs next time.
            if folder and _same_folder(out_dir, folder):
                raise UserError(f'--out {out_dir} is the folder of the {what}; choose another folder '
                                f'for the results')
        found = []
        for path in images:
            stem = os.path.splitext(os.path.basename(path))[0]
            if mask and stem not in masks:
                raise UserError(f'no mask for {path} in {mask}/ (expected {stem}.png)')
            if len(masks.get(stem, [])) > 1:
                raise UserError(f'{" and ".join(masks[stem])} both match {path}; keep one of them')
            found.append((path, masks.get(stem, [None])[0], os.path.join(out_dir, f'{stem}.png')))
        return found
    if mask and os.path.isdir(mask):
        raise UserError(f'--mask {mask} is a folder; give a mask file for --image {image}')
    stem = os.path.splitext(os.path.basename(image))[0]
    out = out or os.path.join(config.OUTPUT_DIR, 'test', f'{stem}_completed.png')
    if os.path.isdir(out):
        out = os.path.join(out, f'{stem}_completed.png')
    return [(image, mask, out)]


def _file_id(path):
    """What makes two paths the same file (through symlinks and hard links), or None if absent."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _writable_folder(path):
    """The nearest existing folder above path if files can be made in it, else None."""
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(folder):
        folder = os.path.dirname(folder)
    return folder if os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK) else None


def make_folder(folder):
    """Create folder and its parents for results, or raise a one-line UserError saying why not."""
    blocker = folder
    while not os.path.lexists(blocker) and os.path.dirname(blocker) != blocker:
        blocker = os.path.dirname(blocker)
    if os.path.lexists(blocker) and not os.path.isdir(blocker):
        raise UserError(f'cannot write to {folder}/: {blocker} is a file; set --OUTPUT_DIR to a folder')
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # the only sure test: permissions, read-only mounts
            pass
    except OSError as error:
        raise UserError(f'cannot write to {folder}/ ({error.strerror or error}); choose another '
                        f'--OUTPUT_DIR or fix its permissions')


def check_outputs(found, overwrite=False):
    """Refuse, before any work, an output that would replace an input, another output, or
    (unless overwrite) any file that exists. found: jobs()' triples."""
    inputs = {}
    for image_path, mask_path, _ in found:
        for path in filter(None, (image_path, mask_path)):
            inputs[os.path.realpath(path)] = path
            if _file_id(path):
                inputs[_file_id(path)] = path
    writers = {}
    for image_path, _, out_path in found:
        extension = os.path.splitext(out_path)[1].lower()
        if extension not in EXACT_OUTPUTS + JPEG_OUTPUTS or not cv2.haveImageWriter(out_path):
            why = ('a GIF holds 256 colours, so the photo\'s known pixels would change; '
                   if extension == '.gif' else '')
            raise UserError(f'cannot write {out_path}: {why}use a .png or .jpg file name '
                            f'(or {", ".join(EXACT_OUTPUTS[1:])}: all but .jpg keep every pixel)')
        real = os.path.realpath(out_path)
        clash = inputs.get(real) or (_file_id(out_path) and inputs.get(_file_id(out_path)))
        if clash:
            raise UserError(f'{out_path} is the input {clash}; choose another --out '
                            f'(test.py never writes over its inputs)')
        if real in writers:
            raise UserError(f'{writers[real]} and {image_path} would both be written to {out_path}; '
                            f'rename one of them')
        writers[real] = image_path
        if os.path.isdir(out_path):
            raise UserError(f'cannot write {out_path}: it is a folder')
        if os.path.lexists(out_path) and not overwrite:
            raise UserError(_exists_message(out_path))
        if _writable_folder(out_path) is None:
            raise UserError(f'cannot write {out_path}: no writable folder there; choose another --out')


def load_jobs(image, mask, box, out, overwrite=False, check_size=None):
    """[(photo, hole, output path)], every file read and checked before any network is built.

    Args: the --image, --mask, --box, --out and --overwrite values; check_size(what, width,
    height), optional, raises UserError for a photo that cannot be completed: it sees each
    photo's size from its header, before the photo is decoded.
    """
    found = jobs(image, mask, box, out)
    check_outputs(found, overwrite)
    work = []
    for image_path, mask_path, out_path in found:
        check = check_size and functools.partial(check_size, f'image {image_path}')
        photo = read_image(image_path, check=check)
        clear = transparent(image_path, photo.shape)
        if clear is not None and (mask_path or box):
            given = f'--mask {mask_path}' if mask_path else f'--box {box}'
            print(f'note: {image_path} has {int(clear.sum()):,} transparent pixels; the hole is {given}, '
                  f'and the colours under them count as known')
        if mask_path:
            hole, where = read_mask(mask_path, photo.shape, image_path), f'mask {mask_path}'
        elif box:
            hole, where = box_mask(box, photo.shape), f'--box {box}'
        elif clear is not None:
            hole, where = clear, f'the transparency of {image_path}'
        else:
            raise UserError(f'--image {image_path} needs a hole: --mask FILE (white = hole), --box '
                            f'x,y,w,h, or a PNG whose transparent pixels are the hole')
        check_hole(hole, where)
        depth = bit_depth(image_path)
        if depth > 8:
            print(f'note: {image_path} has {depth} bits a channel and {out_path} will have 8: '
                  f'the network works in 8 bits, so every pixel is rounded to 256 levels')
        if os.path.splitext(out_path)[1].lower() in JPEG_OUTPUTS:
            print(f'note: {out_path} is a JPEG, which changes the known pixels slightly; '
                  f'a .png keeps them exactly')
        work.append((photo, hole, out_path))
    return work
