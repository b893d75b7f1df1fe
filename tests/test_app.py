"""app.py, the browser page: its handler with a tiny trained model (every bad upload, known
pixels unchanged, the same completion as test.py --image), the running server through its
HTTP API, and the page in headless Chromium. The last two skip without Gradio, Selenium or
Debian's chromium and chromium-driver."""
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import app  # noqa: E402
import config  # noqa: E402
from glcic import backup, errors, inference, synthetic  # noqa: E402

_spec = importlib.util.spec_from_file_location('app_screenshot',
                                               os.path.join(ROOT, 'docs', 'app_screenshot.py'))
page = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(page)

HAVE_GRADIO = importlib.util.find_spec('gradio') is not None
HAVE_BROWSER = (importlib.util.find_spec('selenium') is not None
                and os.path.exists(page.CHROMIUM) and os.path.exists(page.CHROMEDRIVER))
needs_gradio = pytest.mark.skipif(not HAVE_GRADIO, reason=f'Gradio is not installed ({app.INSTALL})')
needs_browser = pytest.mark.skipif(
    not (HAVE_GRADIO and HAVE_BROWSER),
    reason="needs Gradio, Selenium and Debian's browser: pip install -r requirements-app.txt "
           "'selenium>=4.30,<5'; apt-get install chromium chromium-driver")


@pytest.fixture(scope='module')
def handler(trained_run):
    """The page's handler on `trained_run`, loaded once as app.py does at start."""
    saved = config.as_dict()
    backup.apply_run_config([f'--BACKUP_DIR={trained_run}/backup'])
    loaded = app.Handler.load()
    assert loaded.problem is None
    yield loaded
    loaded.close()
    config.set_values(saved)


def photo(height, width, seed=0):
    return cv2.resize(synthetic.face(64, seed), (width, height), interpolation=cv2.INTER_LINEAR)


def write_png(path, rgb):
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
    return str(path)


def read_png(path):
    return cv2.imread(str(path))[..., ::-1]


def stroke_hole(height, width):
    """A brush stroke (disc-ended band) and a blob touching the border: bool [H,W]."""
    hole = np.zeros((height, width), np.uint8)
    cv2.line(hole, (width // 5, height // 2), (width * 3 // 5, height * 2 // 3), 1, max(3, height // 10))
    cv2.circle(hole, (width - 3, 4), 6, 1, -1)
    return hole.astype(bool)


# --- the handler ---

def test_three_columns_at_the_photos_size_with_known_pixels_unchanged(handler):
    image = photo(157, 203)
    hole = stroke_hole(157, 203)
    result = handler.complete(image, hole)
    assert [c.title for c in result.columns] == [
        'completion only', 'completion + discriminator', 'completion + discriminator + Poisson blending']
    for column in result.columns:
        assert column.image.shape == image.shape and column.image.dtype == np.uint8
        assert (column.image[~hole] == image[~hole]).all(), column.title
        assert isinstance(column.ms, int) and column.ms > 0
    assert result.columns[2].ms >= result.columns[1].ms  # the network's time plus the blending's
    assert result.message.startswith('203x157 photo at its own size') and 'ms in all' in result.message
    # The same pixels as test.py --image with each checkpoint, and with --blend.
    nets = handler.nets
    assert (result.columns[0].image == inference.complete_photo(nets, backup.PRETRAINED, image, hole)).all()
    assert (result.columns[1].image == inference.complete_photo(nets, backup.LATEST, image, hole)).all()
    assert (result.columns[2].image == inference.complete_photo(nets, backup.LATEST, image, hole,
                                                                blend=True)).all()


def test_resize_keeps_the_size_and_the_known_pixels(handler):
    image = photo(150, 220, seed=2)
    hole = stroke_hole(150, 220)
    result = handler.complete(image, hole, resize=64)
    assert 'short side resized to 64 px' in result.message
    for column in result.columns:
        assert column.image.shape == image.shape
        assert (column.image[~hole] == image[~hole]).all()
    assert (result.columns[1].image == inference.complete_photo(handler.nets, backup.LATEST, image, hole,
                                                                resize=64)).all()


def test_the_hidden_pixels_never_reach_the_networks(handler):
    image = photo(96, 80, seed=4)
    hole = stroke_hole(96, 80)
    other = image.copy()
    other[hole] = 255 - other[hole]
    first, second = handler.complete(image, hole), handler.complete(other, hole)
    for a, b in zip(first.columns, second.columns):
        assert (a.image == b.image).all(), a.title


@pytest.fixture
def uploads(tmp_path):
    files = {'good': write_png(tmp_path / 'good.png', photo(40, 52))}
    (tmp_path / 'notes.jpg').write_text('not an image at all')
    files['text'] = str(tmp_path / 'notes.jpg')
    (tmp_path / 'empty.png').write_bytes(b'')
    files['empty'] = str(tmp_path / 'empty.png')
    huge = tmp_path / 'huge.jpg'
    with open(huge, 'wb') as f:
        f.truncate(25 * 2 ** 20)  # sparse: no disk used
    files['huge'] = str(huge)
    return files


@pytest.mark.parametrize('name, message', [
    ('text', r'^photo notes\.jpg is not a readable image \(use \.png or \.jpg\)$'),
    ('empty', r'^photo empty\.png is empty$'),
    ('huge', r'^huge\.jpg is 25\.0 MB; the page takes photos up to 20 MB: save it smaller'),
    (None, r'^Upload a photo, or pick the example'),
    ('missing', r'^Upload a photo'),
])
def test_bad_uploads_are_one_message(handler, uploads, name, message):
    photo_array, said = handler.open_photo(uploads.get(name, name and f'/nowhere/{name}.png'))
    assert photo_array is None
    assert re.search(message, said), said
    assert '\n' not in said and '/' not in said  # no server paths on the page


def test_a_photo_with_too_many_pixels_is_refused_after_reading(handler, tmp_path):
    path = tmp_path / 'big.png'
    assert cv2.imwrite(str(path), np.zeros((6000, 8000, 3), np.uint8))  # compresses to a few MB
    photo_array, said = handler.open_photo(str(path))
    assert photo_array is None
    assert said == 'big.png is 8000x6000 = 48.0 Mpx; the page takes up to 40 Mpx: scale it down first.'


def test_a_good_upload_and_the_large_photo_note(handler, uploads, tmp_path):
    photo_array, said = handler.open_photo(uploads['good'])
    assert photo_array.shape == (40, 52, 3) and (photo_array == read_png(uploads['good'])).all()
    assert said == 'good.png: 52x40. Paint over what should go, then press Complete.'
    large = write_png(tmp_path / 'large.png', np.zeros((1500, 3000, 3), np.uint8))  # 4.5 Mpx
    photo_array, said = handler.open_photo(large)
    assert photo_array.shape == (1500, 3000, 3) and 'choose a resize' in said


@pytest.mark.parametrize('hole, resize, message', [
    (None, None, r'^Nothing is painted'),
    ('empty', None, r'^Nothing is painted'),
    ('full', None, r'^The paint covers the whole photo'),
    ('small', None, r'^The paint is 10x8 but the photo is 52x40: upload the photo again'),
    ('stroke', 2, r'^Resize 2: need at least 4 px'),
])
def test_bad_paint_is_one_message(handler, hole, resize, message):
    holes = {'empty': np.zeros((40, 52), bool), 'full': np.ones((40, 52), bool),
             'small': np.ones((8, 10), bool), 'stroke': stroke_hole(40, 52)}
    result = handler.complete(photo(40, 52), holes.get(hole), resize)
    assert result.columns == []
    assert re.search(message, result.message), result.message


def test_no_photo_and_too_many_pixels_at_full_size(handler):
    assert handler.complete(None, stroke_hole(40, 52)).message.startswith('Upload a photo first')
    large = np.zeros((2000, 2100, 3), np.uint8)
    result = handler.complete(large, stroke_hole(2000, 2100))
    assert result.columns == [] and result.message == (
        'The photo is 2100x2000 = 4.2 Mpx, more than the 4 Mpx the networks complete at full size: '
        'choose a resize (e.g. 512).')


def test_painted_layers_become_the_hole():
    layer = np.zeros((6, 8, 4), np.uint8)
    layer[1, 2, 3] = 30  # faint paint still counts
    layer[4, 5] = (255, 0, 255, 178)
    other = np.zeros((6, 8, 4), np.uint8)
    other[0, 7, 3] = 255
    hole = app.painted_hole([layer, other])
    assert hole.dtype == bool and sorted(zip(*np.nonzero(hole))) == [(0, 7), (1, 2), (4, 5)]
    box = app.painted_hole([layer], rectangle=True)
    assert box.sum() == 4 * 4 and box[1:5, 2:6].all()  # the rectangle around the two dots
    assert app.painted_hole([]) is None and app.painted_hole(None) is None


def test_without_a_model_the_page_says_how_to_get_one(tmp_path, no_shipped):
    backup.apply_run_config([f'--BACKUP_DIR={tmp_path}/nothing'])
    empty = app.Handler.load()
    assert empty.nets is None
    assert empty.problem.startswith(f'no trained model in {tmp_path}/nothing/: train first with '
                                    f'python train.py')
    assert 'bash demo.sh' in empty.problem and '\n' not in empty.problem
    assert empty.complete(photo(40, 52), stroke_hole(40, 52)).message == empty.problem
    assert len(empty.titles()) == 3


def test_one_checkpoint_fills_its_column_and_says_which_is_missing(trained_run, tmp_path):
    only = tmp_path / 'backup'
    shutil.copytree(trained_run / 'backup', only, ignore=shutil.ignore_patterns('latest*', 'checkpoint'))
    backup.apply_run_config([f'--BACKUP_DIR={only}'])
    one = app.Handler.load()
    try:
        image, hole = photo(40, 52), stroke_hole(40, 52)
        result = one.complete(image, hole)
        first, missing, blended = result.columns
        assert first.title == 'completion only' and (first.image[~hole] == image[~hole]).all()
        assert missing.image is None and missing.title == f'no latest checkpoint in {only}/'
        assert blended.title == 'completion only + Poisson blending'
        assert (blended.image == inference.complete_photo(one.nets, backup.PRETRAINED, image, hole,
                                                          blend=True)).all()
    finally:
        one.close()


def test_without_gradio_one_line_names_the_install(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'gradio' else real(name, *a))
    with pytest.raises(errors.UserError, match=r'^app.py needs Gradio, an optional install: '
                                               r'pip install -r requirements-app.txt$'):
        app.main([f'--BACKUP_DIR={tmp_path}/nothing'])


def test_it_listens_on_this_machine_unless_told_otherwise():
    assert app.parse_args([]).host == '127.0.0.1'
    assert app.parse_args(['--host', '0.0.0.0', '--port', '8000']).port == 8000
    hosts = ('127.0.0.1', 'localhost', '::1', '0.0.0.0', '192.168.1.2', 'myhost')
    assert [app._loopback(h) for h in hosts] == [
        True, True, True, False, False, False]
    with pytest.raises(errors.UserError, match='--port 0: need 1-65535'):
        app.parse_args(['--port', '0'])


# --- the running server, through its HTTP API ---

def listening_addresses(port):
    """Local addresses with a listening TCP socket on `port`, from /proc/net/tcp and tcp6."""
    found = []
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            for line in f.read().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hexport = local.split(':')
                if int(hexport, 16) == port and state == '0A':  # 0A: LISTEN
                    found.append(address)
    return found


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, names in os.walk(folder)
                  for f in names if '__pycache__' not in d and '.pytest_cache' not in d)


@pytest.fixture(scope='module')
def server(trained_run, tmp_path_factory):
    """python app.py on a free port, with HOME and TMPDIR in folders of their own to watch.

    TensorFlow writes its per-user settings (~/.keras/keras.json, matplotlib's font cache)
    the first time it is imported, as for train.py; those are made before the page starts.
    """
    if not HAVE_GRADIO:
        pytest.skip(f'Gradio is not installed ({app.INSTALL})')
    tmp = tmp_path_factory.mktemp('server')
    home, temp, out = tmp / 'home', tmp / 'tmp', tmp / 'out'
    for folder in (home, temp):
        folder.mkdir()
    env = {**os.environ, 'HOME': str(home), 'TMPDIR': str(temp)}
    subprocess.run([sys.executable, '-c', 'from glcic import inference'], cwd=ROOT, env=env, check=True, timeout=120)
    before = {'home': files_under(home), 'repo': files_under(ROOT)}
    process, url = page.start_server([f'--BACKUP_DIR={trained_run}/backup', f'--OUTPUT_DIR={out}'], env=env)
    yield {'url': url, 'port': int(url.rsplit(':', 1)[1].strip('/')), 'home': home, 'tmp': temp,
           'out': out, 'before': before, 'process': process}
    page.stop_server(process)


@pytest.fixture
def client(server, tmp_path):
    from gradio_client import Client
    return Client(server['url'], verbose=False, download_files=str(tmp_path / 'downloads'))


def editor_value(layer_path):
    from gradio_client import handle_file
    return {'background': None, 'layers': [handle_file(layer_path)], 'composite': None}


def paint_layer(path, hole):
    """The editor's paint layer for `hole`: magenta where painted, transparent elsewhere (RGBA PNG)."""
    layer = np.zeros(hole.shape + (4,), np.uint8)
    layer[hole] = (255, 0, 255, 178)
    assert cv2.imwrite(str(path), layer[..., [2, 1, 0, 3]])
    return str(path)


@pytest.mark.slow
@needs_gradio
def test_the_page_completes_through_its_api_and_downloads_are_exact(server, client, tmp_path):
    from gradio_client import handle_file
    image = photo(70, 90, seed=5)
    hole = stroke_hole(70, 90)
    loaded = client.predict(handle_file(write_png(tmp_path / 'me.png', image)), api_name='/load')
    assert loaded[1] == 'me.png: 90x70. Paint over what should go, then press Complete.'
    *columns, message = client.predict(editor_value(paint_layer(tmp_path / 'layer.png', hole)),
                                       'as painted', 'own size', api_name='/complete')
    assert message.startswith('90x70 photo at its own size') and message.endswith('ms in all.')
    assert [c['label'].rsplit(': ', 1)[0] for c in columns] == [
        'completion only', 'completion + discriminator', 'completion + discriminator + Poisson blending']
    assert all(c['label'].endswith(' ms') for c in columns)
    for column in columns:
        downloaded = read_png(column['value'])  # the file the page's download button gives
        assert downloaded.shape == image.shape
        assert (downloaded[~hole] == image[~hole]).all(), column['label']
    rectangle = client.predict(editor_value(paint_layer(tmp_path / 'layer.png', hole)),
                               'rectangle around the paint', '128', api_name='/complete')
    assert 'short side resized to 128 px' in rectangle[-1]
    box = app.painted_hole([np.dstack([hole] * 4).astype(np.uint8)], rectangle=True)
    assert f'{box.sum():,} px filled' in rectangle[-1]


@pytest.mark.slow
@needs_gradio
def test_bad_uploads_get_a_message_and_the_server_keeps_running(server, client, uploads, tmp_path):
    from gradio_client import handle_file
    for name, start in (('text', 'photo notes.jpg is not a readable image'),
                        ('empty', 'photo empty.png is empty')):
        assert client.predict(handle_file(uploads[name]), api_name='/load')[1].startswith(start)
    # Nothing was loaded, so Complete says so instead of failing.
    layer = paint_layer(tmp_path / 'layer.png', stroke_hole(40, 52))
    assert client.predict(editor_value(layer), 'as painted', 'own size',
                          api_name='/complete')[-1].startswith('Upload a photo first')
    with pytest.raises(Exception, match='(?i)too large|exceed|maximum'):  # refused by the upload route
        client.predict(handle_file(uploads['huge']), api_name='/load')
    client.predict(handle_file(uploads['good']), api_name='/load')
    for values, start in ((editor_value(paint_layer(tmp_path / 'none.png', np.zeros((40, 52), bool))),
                           'Nothing is painted'),
                          (editor_value(paint_layer(tmp_path / 'full.png', np.ones((40, 52), bool))),
                           'The paint covers the whole photo'),
                          ({'background': None, 'layers': [], 'composite': None}, 'Nothing is painted')):
        assert client.predict(values, 'as painted', 'own size', api_name='/complete')[-1].startswith(start)
    assert server['process'].poll() is None
    done = client.predict(editor_value(layer), 'as painted', 'own size', api_name='/complete')
    assert done[-1].endswith('ms in all.')


@pytest.mark.slow
@needs_gradio
def test_the_server_listens_on_loopback_and_writes_only_in_its_folder(server, client, tmp_path):
    from gradio_client import handle_file
    client.predict(handle_file(write_png(tmp_path / 'w.png', photo(40, 52))), api_name='/load')
    client.predict(editor_value(paint_layer(tmp_path / 'l.png', stroke_hole(40, 52))),
                   'as painted', 'own size', api_name='/complete')
    addresses = listening_addresses(server['port'])
    assert addresses and set(addresses) == {'0100007F'}, addresses  # 127.0.0.1 only
    assert files_under(server['home']) == server['before']['home']
    assert files_under(server['tmp']) == []
    assert files_under(ROOT) == server['before']['repo']
    written = files_under(server['out'])
    assert written and all(f.startswith('app' + os.sep) for f in written), written


# --- a real browser ---

@pytest.mark.slow
@needs_browser
def test_a_browser_paints_a_hole_and_sees_three_results(server, uploads, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    driver = page.browser()
    try:
        path = write_png(tmp_path / 'face.png', photo(96, 120, seed=7))
        assert page.upload(driver, server['url'], path) == (
            'face.png: 120x96. Paint over what should go, then press Complete.')
        page.paint(driver, [(30, 40), (60, 55), (90, 45)], (120, 96), brush=6)
        message = page.complete(driver)
        assert message.startswith('120x96 photo at its own size') and message.endswith('ms in all.')
        assert page.result_sizes(driver) == [[120, 96]] * 3
        shot = tmp_path / 'page.png'
        driver.save_screenshot(str(shot))
        assert cv2.imread(str(shot)).shape[1] == 1400
        # The example photo, a rectangle dragged across it: new results of its size.
        assert page.pick_example(driver) == (
            'astronaut.png: 128x128. Paint over what should go, then press Complete.')
        page.paint(driver, [(40, 70), (90, 100)], (128, 128), rectangle=True)
        message = page.complete(driver)
        found = re.search(r'([\d,]+) px filled', message)
        assert found, message
        filled = int(found.group(1).replace(',', ''))
        assert 51 * 31 <= filled < 128 * 128 // 2, message  # the box around the drag, brush included
        assert page.result_sizes(driver) == [[128, 128]] * 3
        # Bad uploads: a line on the page each, and the page goes on working.
        assert page.upload(driver, server['url'], uploads['text']) == (
            'photo notes.jpg is not a readable image (use .png or .jpg)')
        driver.get(server['url'])
        chooser = WebDriverWait(driver, 30).until(
            lambda d: d.find_element(By.CSS_SELECTOR, '#photo input[type=file]'))
        chooser.send_keys(uploads['huge'])
        WebDriverWait(driver, 30).until(lambda d: 'exceed the maximum allowed size of 20.0 Mb: "huge.jpg"'
                                        in d.find_element(By.TAG_NAME, 'body').text)
        assert page.pick_example(driver).startswith('astronaut.png: 128x128.')
        assert server['process'].poll() is None
    finally:
        driver.quit()
