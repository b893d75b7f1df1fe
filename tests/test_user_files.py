"""Nothing the user owns is lost, and one bad file never sinks a run.

test.py's outputs never replace an input, each other or (without --overwrite) any file, and
test.py deletes only grids it wrote; to_npy.py replaces a data set whole or not at all and
refuses a second writer; train.py --fresh moves the previous run's outputs aside; image bombs
and FIFOs are skipped or refused from their header, never decoded; bad settings, sizes and
unwritable folders give one line before anything is loaded or half-written.
"""
import importlib.util
import json
import os
import re
import resource
import signal
import struct
import subprocess
import sys
import time
import zlib

import cv2
import numpy as np
import pytest

from conftest import ROOT, TINY, run_script, tiny_args

import config
import to_npy
from glcic import errors, evaluate, inference, photos, synthetic

# Loaded from its path: `import test` could find Python's own test package instead.
_spec = importlib.util.spec_from_file_location('glcic_test_script', os.path.join(ROOT, 'test.py'))
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)

pytestmark = pytest.mark.skipif(not sys.platform.startswith('linux'),
                                reason='FIFOs, RLIMIT_FSIZE and renameat2 as on Linux')
USER_ERRORS = (errors.UserError, config.ConfigError)  # what cli.run prints as one line
# TensorFlow's own start-up lines, printed before any log level applies.
TF_NOISE = re.compile(r'^(WARNING: All log messages before absl::InitializeLog'
                      r'|[IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\]'
                      r'|To enable the following instructions)')
SIZE = [f'--{k}={v}' for k, v in TINY.items() if k in ('IMAGE_SIZE', 'LOCAL_SIZE', 'HOLE_MIN', 'HOLE_MAX')]


def one_line(error_info, *words):
    """The message of a user error: one line that names every word."""
    message = str(error_info.value)
    assert '\n' not in message, message
    for word in words:
        assert word in message, f'{word!r} not in: {message}'
    return message


def write_png(path, rgb):
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def photo(height, width, seed=0):
    return cv2.resize(synthetic.face(64, seed), (width, height), interpolation=cv2.INTER_LINEAR)


def snapshot(folder):
    """{relative path: bytes} of every file under folder."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


def limited_file_size(limit):
    """preexec_fn: writes past `limit` bytes fail with EFBIG (as on a full disk) instead of killing."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def one_error_line(result):
    """A script's stderr holds one `error: ...` line (TensorFlow's start-up lines aside) and no
    traceback; returns it."""
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-3000:])
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip() and not TF_NOISE.match(line)]
    assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr[-3000:]
    return lines[0]


# --- crafted image headers: bombs of a few bytes that claim a huge size ---

def png_chunk(kind, body):
    return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))


def png_bomb(width, height):
    """A valid PNG header (8-bit RGB) with a few bytes of pixel data: 68 bytes in all."""
    header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + png_chunk(b'IHDR', header)
            + png_chunk(b'IDAT', zlib.compress(b'\x00' * 12)) + png_chunk(b'IEND', b''))


def jpeg_bomb(width, height):
    """SOI, a JFIF segment, a baseline frame header (SOF0) of 3 components, EOI."""
    jfif = b'JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00'
    frame = struct.pack('>BHHB', 8, height, width, 3) + b'\x01\x22\x00\x02\x11\x01\x03\x11\x01'
    return (b'\xff\xd8' + b'\xff\xe0' + struct.pack('>H', 2 + len(jfif)) + jfif
            + b'\xff\xc0' + struct.pack('>H', 2 + len(frame)) + frame + b'\xff\xd9')


def bmp_bomb(width, height):
    info = struct.pack('<IiiHHIIiiII', 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b'BM' + struct.pack('<IHHI', 54 + 64, 0, 0, 54) + info + b'\x00' * 64


def gif_bomb(width, height):
    return b'GIF89a' + struct.pack('<HHBBB', width, height, 0, 0, 0) \
        + b',' + struct.pack('<HHHHB', 0, 0, width, height, 0) + b'\x02\x02\x44\x01\x00;'


def webp_bomb(width, height):
    body = b'WEBP' + b'VP8X' + struct.pack('<I', 10) + b'\x00\x00\x00\x00' \
        + (width - 1).to_bytes(3, 'little') + (height - 1).to_bytes(3, 'little')
    return b'RIFF' + struct.pack('<I', len(body)) + body


BOMBS = {  # name: (bytes, claimed width, claimed height)
    'bomb60000.png': (png_bomb(60000, 60000), 60000, 60000),  # OpenCV itself raises on this one
    'bomb20000.png': (png_bomb(20000, 20000), 20000, 20000),  # OpenCV would allocate 1.2 GB first
    'bomb.jpg': (jpeg_bomb(30000, 30000), 30000, 30000),
    'bomb.bmp': (bmp_bomb(20000, 20000), 20000, 20000),
    'bomb.gif': (gif_bomb(65535, 65535), 65535, 65535),
    'bomb.webp': (webp_bomb(16384, 16384), 16384, 16384),
}


# --- fixtures ---

@pytest.fixture(scope='module')
def model(tmp_path_factory):
    """A real (untrained) checkpoint, made by train.py --fresh over the files of an earlier run.

    Returns the folder (npy/, backup/, output/) and what the earlier run had left.
    """
    root = tmp_path_factory.mktemp('model')
    made = run_script('to_npy.py', '--demo', '20', *tiny_args(root))  # 19 train + 1 test
    assert made.returncode == 0, made.stderr
    output, backup = root / 'output', root / 'backup'
    (output / 'logs').mkdir(parents=True)
    (output / 'test').mkdir()
    rows = ['epoch,phase,step,seconds,mse,d_loss,g_adv'] + [f'{e},1,{2 * e},1.0,0.5,,' for e in range(1, 9)]
    (output / 'loss.csv').write_text('\n'.join(rows) + '\n')
    for e in range(1, 9):
        (output / f'epoch_{e:04d}.png').write_bytes(f'grid of epoch {e}'.encode())
    (output / 'loss.png').write_bytes(b'old curve')
    (output / 'logs' / 'events.out.tfevents.1.old').write_bytes(b'old scalars')
    (output / 'test' / 'metrics.md').write_text('old results of test.py')
    (output / 'notes.txt').write_text('the user\'s own file')
    backup.mkdir()
    (backup / 'config.json').write_text(json.dumps({'IMAGE_SIZE': 32}))
    (backup / 'latest-16.index').write_bytes(b'old checkpoint')
    before = {'output': snapshot(output), 'backup': snapshot(backup)}
    trained = run_script('train.py', '--fresh', *tiny_args(root, PRETRAIN_EPOCH=1, MAX_EPOCH=0,
                                                          BN_RECALIBRATE_BATCHES=0))
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert (backup / 'latest-0.index').exists(), os.listdir(backup)
    return root, before, trained.stdout


@pytest.fixture
def unloadable(tmp_path):
    """A BACKUP_DIR whose only checkpoint cannot be restored: an error other than 'damaged'
    proves that test.py checked its inputs before it built and loaded the network."""
    folder = tmp_path / 'unloadable'
    folder.mkdir()
    (folder / 'config.json').write_text(json.dumps({**TINY, 'OUTPUT_DIR': str(tmp_path / 'output')}))
    (folder / 'pretrained.index').write_bytes(b'')
    return folder


def test_unloadable_backup_fails_only_when_loading(unloadable, tmp_path):
    write_png(tmp_path / 'p.png', photo(40, 48))
    with pytest.raises(errors.UserError) as error:
        script.main([f'--BACKUP_DIR={unloadable}', '--model', 'pretrained', '--image',
                     str(tmp_path / 'p.png'), '--box', '5,5,10,10', '--out', str(tmp_path / 'done.png')])
    one_line(error, 'pretrained.index is damaged')


def run_test_py(backup_dir, *args):
    return script.main([f'--BACKUP_DIR={backup_dir}', *args])


# --- 1. test.py --out never replaces an input, another output, or an existing file unasked ---

def test_out_never_replaces_an_input(unloadable, tmp_path):
    write_png(tmp_path / 'p.png', photo(40, 48))
    mask = np.zeros((40, 48), np.uint8)
    mask[5:15, 5:15] = 255
    cv2.imwrite(str(tmp_path / 'm.png'), mask)
    os.link(tmp_path / 'p.png', tmp_path / 'hardlink.png')
    os.symlink(tmp_path / 'p.png', tmp_path / 'symlink.png')
    before = snapshot(tmp_path)
    base = ['--model', 'pretrained', '--image', str(tmp_path / 'p.png')]
    cases = [(['--box', '10,10,20,20', '--out', 'p.png'], 'p.png'),
             (['--mask', str(tmp_path / 'm.png'), '--out', 'm.png'], 'm.png'),
             (['--box', '10,10,20,20', '--out', 'hardlink.png'], 'p.png'),
             (['--box', '10,10,20,20', '--out', 'symlink.png'], 'p.png')]
    for args, clash in cases:
        args[-1] = str(tmp_path / args[-1])
        for overwrite in ([], ['--overwrite']):
            with pytest.raises(errors.UserError) as error:
                run_test_py(unloadable, *base, *args, *overwrite)
            one_line(error, f'is the input {tmp_path / clash}', 'choose another --out')
    assert snapshot(tmp_path) == before


def test_out_into_the_photo_or_mask_folder_is_refused(unloadable, tmp_path):
    for folder in ('photos', 'masks'):
        (tmp_path / folder).mkdir()
    write_png(tmp_path / 'photos' / 'a.png', photo(40, 48))
    mask = np.zeros((40, 48), np.uint8)
    mask[5:15, 5:15] = 255
    cv2.imwrite(str(tmp_path / 'masks' / 'a.png'), mask)
    before = snapshot(tmp_path)
    for folder, what in (('photos', 'photos'), ('masks', 'masks'), ('photos/.', 'photos')):
        with pytest.raises(errors.UserError) as error:
            run_test_py(unloadable, '--model', 'pretrained', '--image', str(tmp_path / 'photos'),
                        '--mask', str(tmp_path / 'masks'), '--out', str(tmp_path / folder), '--overwrite')
        one_line(error, f'is the folder of the {what}')
    assert snapshot(tmp_path) == before


def test_two_photos_never_share_an_output(unloadable, tmp_path):
    (tmp_path / 'photos').mkdir()
    write_png(tmp_path / 'photos' / 'a.png', photo(40, 48))
    write_png(tmp_path / 'photos' / 'a.jpg', photo(40, 48, seed=1))
    with pytest.raises(errors.UserError) as error:
        run_test_py(unloadable, '--model', 'pretrained', '--image', str(tmp_path / 'photos'),
                    '--box', '5,5,10,10', '--out', str(tmp_path / 'done'))
    one_line(error, 'a.jpg and ', 'a.png would both be written to', 'rename one')
    # Two masks for one photo: neither is picked silently.
    (tmp_path / 'masks').mkdir()
    os.remove(tmp_path / 'photos' / 'a.jpg')
    for ext in ('png', 'bmp'):
        cv2.imwrite(str(tmp_path / 'masks' / f'a.{ext}'), np.full((40, 48), 255, np.uint8))
    with pytest.raises(errors.UserError) as error:
        run_test_py(unloadable, '--model', 'pretrained', '--image', str(tmp_path / 'photos'),
                    '--mask', str(tmp_path / 'masks'), '--out', str(tmp_path / 'done'))
    one_line(error, 'a.bmp and ', 'a.png both match', 'keep one')
    assert not (tmp_path / 'done').exists()


def test_an_existing_output_is_replaced_only_with_overwrite(model, tmp_path):
    root = model[0]
    write_png(tmp_path / 'p.png', photo(36, 44))
    out = tmp_path / 'done.png'
    out.write_bytes(b'an older result the user keeps')
    default = root / 'output' / 'test' / 'p_completed.png'  # where a run without --out writes
    default.write_bytes(b'the result of an earlier run')
    args = [f'--OUTPUT_DIR={root}/output', '--image', str(tmp_path / 'p.png'), '--box', '8,8,12,12']
    for path, out_args in ((out, ['--out', str(out)]), (default, [])):
        with pytest.raises(errors.UserError) as error:
            run_test_py(root / 'backup', *args, *out_args)
        one_line(error, f'{path} exists', '--overwrite')
    assert out.read_bytes() == b'an older result the user keeps'
    assert default.read_bytes() == b'the result of an earlier run'
    assert run_test_py(root / 'backup', *args, '--out', str(out), '--overwrite') == 0
    result = cv2.imread(str(out))
    assert result is not None and result.shape == (36, 44, 3)
    assert sorted(os.listdir(tmp_path)) == ['done.png', 'p.png']


WRITE_RESULT = r'''
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from glcic import cli, photos
rgb = np.random.RandomState(0).randint(0, 256, (160, 160, 3)).astype(np.uint8)  # ~77 KB as PNG
cli.run(lambda argv: photos.write_image(sys.argv[2], rgb, overwrite=True))
'''


def test_a_failed_write_keeps_the_old_output(tmp_path):
    """test.py's write of a result (photos.write_image) failing half-way (RLIMIT_FSIZE: EFBIG,
    as on a full disk) leaves the old file and no temporary file, with one error line."""
    out = tmp_path / 'done.png'
    out.write_bytes(b'the good result of yesterday')
    result = subprocess.run([sys.executable, '-c', WRITE_RESULT, ROOT, str(out)], capture_output=True,
                            text=True, timeout=60, preexec_fn=limited_file_size(20_000))
    line = one_error_line(result)
    assert f'could not write {out} (File too large); the old file is unchanged' in line, line
    assert out.read_bytes() == b'the good result of yesterday'
    assert os.listdir(tmp_path) == ['done.png']


# --- 2. to_npy.py: the data set changes whole or not at all; one writer at a time ---

def npy_files(npy):
    return {name: (npy / name).read_bytes() for name in to_npy.FILES}


def make_set(npy, *args):
    to_npy.main(['--demo', '20', *SIZE, f'--NPY_DIR={npy}', *args])
    return npy_files(npy)


def test_an_interrupted_or_failed_write_leaves_the_old_set_whole(tmp_path, monkeypatch):
    npy = tmp_path / 'npy'
    old = make_set(npy, '--SEED=1')
    real_save = to_npy.save_npy
    for failure in (KeyboardInterrupt(), OSError(28, 'No space left on device')):
        calls = []

        def save_then_fail(path, array):
            calls.append(path)
            if len(calls) == 2:  # x_train.npy is written, x_test.npy is next
                raise failure
            real_save(path, array)

        monkeypatch.setattr(to_npy, 'save_npy', save_then_fail)
        with pytest.raises((KeyboardInterrupt, errors.UserError)) as error:
            to_npy.main(['--demo', '30', *SIZE, f'--NPY_DIR={npy}', '--SEED=2'])
        if isinstance(failure, OSError):
            one_line(error, 'No space left on device', 'nothing was changed')
        assert npy_files(npy) == old, f'{type(failure).__name__} mixed a new file into the old set'
        assert sorted(os.listdir(tmp_path)) == ['npy', 'npy.lock'], os.listdir(tmp_path)
    monkeypatch.setattr(to_npy, 'save_npy', real_save)
    new = make_set(npy, '--SEED=2')
    assert new != old and npy_files(tmp_path / 'npy.previous') == old  # the set it replaced, kept


def test_a_full_disk_leaves_the_old_set_and_one_line(tmp_path):
    npy = tmp_path / 'npy'
    old = make_set(npy)
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'to_npy.py'), '--demo', '40',
                             '--IMAGE_SIZE=64', f'--NPY_DIR={npy}'], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, preexec_fn=limited_file_size(100_000))
    line = one_error_line(result)
    assert f'cannot write the data set to {npy}/' in line and 'nothing was changed' in line, line
    assert npy_files(npy) == old
    assert sorted(os.listdir(tmp_path)) == ['npy', 'npy.lock']


def test_a_second_writer_is_refused(tmp_path, monkeypatch):
    npy = tmp_path / 'npy'
    old = make_set(npy, '--SEED=1')
    second = []
    real_save = to_npy.save_npy

    def save_while_another_starts(path, array):
        real_save(path, array)
        if not second:  # half-way through the first run's write
            second.append(run_script('to_npy.py', '--demo', '20', *SIZE, f'--NPY_DIR={npy}', '--SEED=3',
                                     timeout=120))

    monkeypatch.setattr(to_npy, 'save_npy', save_while_another_starts)
    to_npy.main(['--demo', '20', *SIZE, f'--NPY_DIR={npy}', '--SEED=2'])
    line = one_error_line(second[0])
    assert f'another to_npy.py is writing {npy}/' in line, line
    meta = json.loads((npy / 'meta.json').read_text())
    assert meta['seed'] == 2 and json.loads(old['meta.json'])['seed'] == 1
    # The arrays belong to the same run as meta.json: seed 2's faces, in both splits.
    again = tmp_path / 'again'
    monkeypatch.setattr(to_npy, 'save_npy', real_save)
    assert npy_files(npy) == make_set(again, '--SEED=2')


def test_npy_dir_with_other_files_is_never_replaced(tmp_path):
    npy = tmp_path / 'mine'
    npy.mkdir()
    (npy / 'thesis.tex').write_text('months of work')
    with pytest.raises(errors.UserError) as error:
        to_npy.main(['--demo', '20', *SIZE, f'--NPY_DIR={npy}'])
    one_line(error, 'thesis.tex', 'which to_npy.py did not write', 'NPY_DIR')
    assert sorted(os.listdir(npy)) == ['thesis.tex']
    # Through a symlink the set replaces the folder it points at; the link keeps working.
    real = tmp_path / 'disk' / 'npy'
    make_set(real, '--SEED=1')
    os.symlink(real, tmp_path / 'link')
    new = make_set(tmp_path / 'link', '--SEED=2')
    assert os.path.islink(tmp_path / 'link') and npy_files(real) == new


# --- 3. train.py --fresh moves the previous run's outputs aside with its checkpoints ---

def test_fresh_moves_the_previous_outputs_aside(model):
    from glcic import housekeeping
    root, before, printed = model
    output, backup = root / 'output', root / 'backup'
    moved_backup = [p for p in backup.iterdir() if p.name.startswith('previous-')]
    moved_output = [p for p in output.iterdir() if p.name.startswith('previous-')]
    assert len(moved_backup) == len(moved_output) == 1, (os.listdir(backup), os.listdir(output))
    assert moved_backup[0].name == moved_output[0].name  # one time stamp for the whole run
    assert snapshot(moved_backup[0]) == before['backup']
    run_files = {k: v for k, v in before['output'].items()
                 if not k.startswith('test/') and k != 'notes.txt'}
    assert snapshot(moved_output[0]) == run_files  # loss.csv with its 8 rows, grids, logs
    assert (output / 'notes.txt').read_text() == 'the user\'s own file'
    assert (output / 'test' / 'metrics.md').exists()
    assert not list(output.glob('epoch_*.png'))
    assert (output / 'loss.csv').read_text().splitlines() == [','.join(housekeeping.LOSS_FIELDS)]
    assert not (output / 'logs' / 'events.out.tfevents.1.old').exists()
    assert f'moved the previous run to {moved_backup[0]}/' in printed
    assert str(moved_output[0]) in printed


# --- 4. test.py deletes only grids it wrote; config.json values are checked ---

def test_test_py_deletes_only_the_grids_it_wrote(model, tmp_path):
    """An OUTPUT_DIR that holds someone else's files: test.py writes its results there, deletes
    the grids its list says an earlier run wrote, and none of the other files."""
    root = model[0]
    victim = tmp_path / 'victim'
    (victim / 'test').mkdir(parents=True)
    (victim / 'test' / 'grid_007.png').write_bytes(b'not written by test.py')
    (victim / 'test' / 'grid_003.png').write_bytes(b'written by an earlier test.py')
    (victim / 'test' / 'grids.json').write_text('["grid_003.png", "../../elsewhere.png", "grid_1.png/x", 3]')
    (tmp_path / 'elsewhere.png').write_bytes(b'outside')
    assert run_test_py(root / 'backup', f'--NPY_DIR={root}/npy', f'--OUTPUT_DIR={victim}') == 0
    assert sorted(os.listdir(victim / 'test')) == ['grid_000.png', 'grid_007.png', 'grids.json',
                                                   'metrics.json', 'metrics.md']
    assert (victim / 'test' / 'grid_007.png').read_bytes() == b'not written by test.py'
    assert (tmp_path / 'elsewhere.png').read_bytes() == b'outside'
    assert json.loads((victim / 'test' / 'grids.json').read_text()) == ['grid_000.png']


@pytest.mark.parametrize('value, words', [
    ({'BATCH_SIZE': '16'}, ["BATCH_SIZE='16'", 'expected int, got str']),
    ({'BATCH_SIZE': 16.0}, ['BATCH_SIZE=16.0', 'expected int, got float']),
    ({'IMAGE_SIZE': 32.0}, ['IMAGE_SIZE=32.0', 'expected int']),
    ({'HOLE_MIN': [4]}, ['HOLE_MIN=[4]', 'got list']),
    ({'FLIP': 1}, ['FLIP=1', 'expected bool']),
    ({'NPY_DIR': None}, ['NPY_DIR=None', 'expected str']),
    ({'IMAGE_SIZE': 30}, ['IMAGE_SIZE=30', 'divisible by 4']),
    ({'WIDTH': 0}, ['WIDTH=0', 'must be >= 1']),
    ([1, 2], ['holds a list']),
])
def test_config_json_values_are_checked_like_the_command_line(tmp_path, value, words):
    backup_dir = tmp_path / 'backup'
    backup_dir.mkdir()
    saved = [*value] if isinstance(value, list) else {**TINY, **value}
    (backup_dir / 'config.json').write_text(json.dumps(saved))
    with pytest.raises(errors.UserError) as error:
        run_test_py(backup_dir)
    one_line(error, 'config.json', *words)


# --- 5. image bombs: the size comes from the header, before anything is decoded ---

def test_header_sizes_match_what_opencv_decodes(tmp_path):
    from PIL import Image
    rgb = np.random.RandomState(0).randint(0, 256, (37, 53, 3)).astype(np.uint8)
    for name, params in (('a.png', []), ('a.jpg', []), ('a.bmp', []),
                         ('lossy.webp', [cv2.IMWRITE_WEBP_QUALITY, 80]),
                         ('lossless.webp', [cv2.IMWRITE_WEBP_QUALITY, 101])):
        assert cv2.imwrite(str(tmp_path / name), rgb, params)
    Image.fromarray(rgb).save(tmp_path / 'a.gif')
    Image.fromarray(rgb).save(tmp_path / 'progressive.jpg', progressive=True)
    exif = b'Exif\x00\x00II*\x00\x08\x00\x00\x00\x00\x00'  # an empty EXIF block: a VP8X header
    Image.fromarray(rgb).save(tmp_path / 'extended.webp', lossless=True, exif=exif)
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / 'gray.bmp')
    for path in sorted(tmp_path.iterdir()):
        with open(path, 'rb') as f:
            assert photos.image_size(f) == (53, 37), path.name
        assert photos.decode(str(path)).shape[:2] == (37, 53), path.name
    for name, (content, width, height) in BOMBS.items():
        (tmp_path / name).write_bytes(content)
        with open(tmp_path / name, 'rb') as f:
            assert photos.image_size(f) == (width, height), name


def test_to_npy_skips_image_bombs_without_decoding_them(tmp_path, monkeypatch):
    src = tmp_path / 'photos'
    src.mkdir()
    for i in range(3):
        write_png(src / f'good{i}.png', photo(50, 40, seed=i))
    for name, (content, _, _) in BOMBS.items():
        (src / name).write_bytes(content)
    assert len(png_bomb(60000, 60000)) < 70
    start = time.monotonic()
    result = run_script('to_npy.py', f'--src={src}', *SIZE, f'--NPY_DIR={tmp_path}/npy', timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.monotonic() - start < 60
    meta = json.loads((tmp_path / 'npy' / 'meta.json').read_text())
    assert meta['train'] + meta['test'] == 3
    skipped = {os.path.basename(p): why for p, why in meta['skipped_files'].items()}
    assert set(skipped) == set(BOMBS), skipped
    for name, (_, width, height) in BOMBS.items():
        assert skipped[name].startswith(f'too large ({width}x{height} px'), (name, skipped[name])
    # Not one of them reaches the decoder.
    decoded = []
    monkeypatch.setattr(photos.cv2, 'imdecode', lambda raw, flag: decoded.append(raw.size))
    for name in BOMBS:
        image, why = to_npy.load_square(str(src / name))
        assert image is None and why.startswith('too large'), (name, why)
    assert decoded == []


def test_test_py_refuses_a_bomb_before_loading(unloadable, tmp_path):
    good = photo(40, 48)
    write_png(tmp_path / 'p.png', good)
    for name, (content, width, height) in BOMBS.items():
        (tmp_path / name).write_bytes(content)
        for resize in ([], ['--resize', '64']):
            start = time.monotonic()
            with pytest.raises(errors.UserError) as error:
                run_test_py(unloadable, '--model', 'pretrained', '--image', str(tmp_path / name),
                            '--box', '1,1,4,4', '--out', str(tmp_path / 'out.png'), *resize)
            one_line(error, name, f'{width}x{height}', 'too large')
            assert time.monotonic() - start < 5
    # Masks: a bomb, and a mask whose header's size is not the photo's, are never decoded.
    for side, words in ((60000, ['mask.png is too large (60000x60000 px']),
                        (5000, ['mask.png is 5000x5000 but image', 'is 48x40'])):
        (tmp_path / 'mask.png').write_bytes(png_bomb(side, side))
        with pytest.raises(errors.UserError) as error:
            run_test_py(unloadable, '--model', 'pretrained', '--image', str(tmp_path / 'p.png'),
                        '--mask', str(tmp_path / 'mask.png'), '--out', str(tmp_path / 'out.png'))
        one_line(error, *words)
    assert not (tmp_path / 'out.png').exists()


# --- 6. FIFOs and other special files are never opened for reading ---

def test_a_fifo_among_the_photos_is_skipped(tmp_path):
    src = tmp_path / 'photos'
    src.mkdir()
    for i in range(3):
        write_png(src / f'good{i}.png', photo(50, 40, seed=i))
    os.mkfifo(src / 'fifo.jpg')
    result = run_script('to_npy.py', f'--src={src}', *SIZE, f'--NPY_DIR={tmp_path}/npy', timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads((tmp_path / 'npy' / 'meta.json').read_text())
    assert meta['train'] + meta['test'] == 3
    assert {os.path.basename(p): why for p, why in meta['skipped_files'].items()} == \
        {'fifo.jpg': 'not a regular file'}


def test_test_py_refuses_a_fifo(unloadable, tmp_path):
    os.mkfifo(tmp_path / 'fifo.png')
    write_png(tmp_path / 'p.png', photo(40, 48))
    for args in (['--image', str(tmp_path / 'fifo.png'), '--box', '1,1,4,4'],
                 ['--image', str(tmp_path / 'p.png'), '--mask', str(tmp_path / 'fifo.png')]):
        with pytest.raises(errors.UserError) as error:
            run_test_py(unloadable, '--model', 'pretrained', *args, '--out', str(tmp_path / 'out.png'))
        one_line(error, 'fifo.png is not a regular file')


# --- 7. one line, before anything is loaded or half-written ---

def test_unwritable_outputs_are_one_line_before_any_work(unloadable, tmp_path):
    (tmp_path / 'a_file').write_text('not a folder')
    write_png(tmp_path / 'p.png', photo(40, 48))
    with pytest.raises(errors.UserError) as error:
        run_test_py(unloadable, '--model', 'pretrained', '--image', str(tmp_path / 'p.png'),
                    '--box', '1,1,4,4', '--out', str(tmp_path / 'a_file' / 'out.png'))
    one_line(error, 'cannot write', 'a_file/out.png')
    with pytest.raises(errors.UserError) as error:
        to_npy.main(['--demo', '20', *SIZE, f'--NPY_DIR={tmp_path}/a_file/npy'])
    one_line(error, 'cannot write the data set', 'a_file is a file')
    assert sorted(os.listdir(tmp_path)) == ['a_file', 'p.png', 'unloadable']


@pytest.mark.parametrize('argv, words', [
    (['--NPY_DIR='], ["NPY_DIR=''", 'must name a folder']),
    (['--OUTPUT_DIR= '], ['OUTPUT_DIR', 'must name a folder']),
    (['--SEED=-1'], ['SEED=-1', '2**32']),
    ([f'--SEED={2 ** 32}'], ['SEED=4294967296', '2**32']),
    (['--LEARNING_RATE=1e400'], ['LEARNING_RATE=inf', 'finite']),
])
def test_bad_settings_are_one_line_in_every_script(tmp_path, argv, words):
    import train
    for main in (to_npy.main, train.main, script.main):
        config.set_values({**TINY, 'NPY_DIR': str(tmp_path / 'npy'), 'BACKUP_DIR': str(tmp_path / 'b')})
        with pytest.raises(USER_ERRORS) as error:
            main(['--demo', '20', *argv] if main is to_npy.main else argv)
        one_line(error, *words)
    assert not os.listdir(tmp_path)


def test_photo_sizes_are_checked_before_loading(unloadable, tmp_path):
    write_png(tmp_path / 'tiny.png', photo(3, 3))
    write_png(tmp_path / 'p.png', photo(40, 48))
    big = np.zeros((2100, 2000, 3), np.uint8)  # 4.2 MP: over inference.MAX_PIXELS
    write_png(tmp_path / 'big.png', big)
    cases = [(['--image', 'tiny.png', '--box', '0,0,1,1'], ['tiny.png is 3x3 px', 'at least 4 px']),
             (['--image', 'p.png', '--box', '1,1,4,4', '--resize', '100000'],
              ['p.png is 48x40 px', 'with --resize 100000', 'use a smaller --resize']),
             (['--image', 'big.png', '--box', '1,1,4,4'], ['big.png is 2000x2100 px', 'add --resize'])]
    for args, words in cases:
        args = [str(tmp_path / a) if a.endswith('.png') else a for a in args]
        start = time.monotonic()
        with pytest.raises(errors.UserError) as error:
            run_test_py(unloadable, '--model', 'pretrained', *args, '--out', str(tmp_path / 'out.png'))
        one_line(error, *words)
        assert time.monotonic() - start < 5, 'the photo was resized before its size was checked'
    assert inference.work_size(40, 48, 100000) == (100000, 120000)


# --- 8. smaller ones ---

def test_demo_count_must_be_two_or_more(tmp_path):
    for count in ('-5', '0', '1'):
        with pytest.raises(errors.UserError) as error:
            to_npy.main(['--demo', count, *SIZE, f'--NPY_DIR={tmp_path}/npy'])
        one_line(error, f'--demo {count}', 'at least 2')
    assert not os.listdir(tmp_path)
    to_npy.main(['--demo', *SIZE, '--NUM_IMAGES=3', f'--NPY_DIR={tmp_path}/npy'])  # bare: NUM_IMAGES
    meta = json.loads((tmp_path / 'npy' / 'meta.json').read_text())
    assert meta['train'] + meta['test'] == 3


def test_exact_images_keep_metrics_json_valid(model, tmp_path):
    """Constant test images: a fill can be exact, whose PSNR is infinite; metrics.json must still
    be JSON that any parser reads (no Infinity or NaN)."""
    root = model[0]
    np.save(tmp_path / 'flat.npy', np.full((3, 32, 32, 3), 128, np.uint8))
    assert run_test_py(root / 'backup', f'--OUTPUT_DIR={tmp_path}/out', '--npy', str(tmp_path / 'flat.npy'),
                       '--grids', '0') == 0

    def refuse(constant):
        raise AssertionError(f'{constant} in metrics.json')

    report = json.loads((tmp_path / 'out' / 'test' / 'metrics.json').read_text(), parse_constant=refuse)
    for row in report['rows']:
        assert all(row[key] <= evaluate.PSNR_MAX for key in ('hole_psnr', 'psnr')), row
    telea = next(r for r in report['rows'] if r['method'] == 'OpenCV Telea')
    assert telea['psnr'] > 60  # exact on some images (PSNR_MAX each), nearly so on the rest
    black = np.zeros((1, 4, 4, 3), np.uint8)
    assert evaluate.psnr(black, black) == [evaluate.PSNR_MAX]


def test_saves_a_kill_left_unlisted_are_removed_unless_asked_for(tmp_path, tiny_config):
    """A kill between a save's last file and the `checkpoint` update, or between that update and
    the deletion of the save that fell off the list, leaves a complete latest-<step> that the
    Saver never rotates; the next start removes it (not one named by --resume)."""
    import shutil
    import tensorflow as tf
    from glcic import backup
    tf1 = tf.compat.v1
    config.set_values({'BACKUP_DIR': str(tmp_path)})
    with tf.Graph().as_default():
        tf1.get_variable('v', [2])
        saver = tf1.train.Saver(save_relative_paths=True)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for step in (1, 2):
                backup.save(sess, saver, backup.LATEST, step)
    for step in (0, 3, 4):  # complete files, not listed in `checkpoint`
        for path in tmp_path.glob('latest-2.*'):
            shutil.copy(path, tmp_path / path.name.replace('latest-2', f'latest-{step}'))
    (tmp_path / 'latest-5.index.tempstate123').write_bytes(b'x')
    removed = backup.remove_partial(keep=str(tmp_path / 'latest-4'))
    expected = ['latest-5.index.tempstate123'] + [p.name.replace('latest-2', f'latest-{step}')
                                                  for p in tmp_path.glob('latest-2.*') for step in (0, 3)]
    assert sorted(os.path.basename(p) for p in removed) == sorted(expected)
    left = sorted(p.name.split('.')[0] for p in tmp_path.glob('latest-*.index'))
    assert left == ['latest-1', 'latest-2', 'latest-4']
    (tmp_path / 'checkpoint').unlink()  # unknown newest: nothing is touched
    assert backup.remove_partial() == [] and len(list(tmp_path.glob('latest-4.*'))) == 2
