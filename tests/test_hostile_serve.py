"""Hostile inputs to what serves a trained model: export.py and its SavedModel, test.py's paths and
transparent photos, and the page of app.py (its start, its folder, concurrent and abusive requests).

One tiny checkpoint (two training steps, not a trained model) serves every test here: these
tests check what happens around the network, not how well it fills."""
import importlib.util
import os
import re
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

import app
import config
import export as export_script
from glcic import errors, synthetic
from conftest import ROOT, TINY
from test_network import save_tiny_checkpoint

def error_lines(result):
    """The `error:` lines of a script's stderr; there must be no traceback."""
    assert 'Traceback' not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith('error:')]


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """A tiny checkpoint in a backup folder with its config.json, and its export."""
    tmp = tmp_path_factory.mktemp('run')
    saved = config.as_dict()
    config.set_values({**TINY, 'OUTPUT_DIR': str(tmp / 'output')})
    save_tiny_checkpoint(tmp / 'backup')
    config.set_values(saved)
    assert export_script.main([f'--BACKUP_DIR={tmp}/backup', f'--OUTPUT_DIR={tmp}/output']) == 0
    config.set_values(saved)
    return tmp


# --- export.py ---

def test_overwrite_refuses_an_export_folder_holding_other_files(run, tmp_path):
    export = tmp_path / 'export'
    export.mkdir()
    for name in ('saved_model.pb', 'NOTES.txt'):
        (export / name).write_bytes(b'mine')
    (export / 'variables').mkdir()
    with pytest.raises(errors.UserError) as error:
        export_script.main([f'--BACKUP_DIR={run}/backup', '--out', str(export), '--overwrite'])
    assert str(error.value) == (
        f'{export}/ holds NOTES.txt, which export.py did not write, and --overwrite replaces the '
        f'whole folder: move them out, or choose another --out')
    assert sorted(os.listdir(export)) == ['NOTES.txt', 'saved_model.pb', 'variables']
    assert (export / 'NOTES.txt').read_bytes() == b'mine'


def test_overwrite_through_a_symlink_replaces_its_folder_and_leaves_nothing_behind(run, tmp_path):
    real, links = tmp_path / 'real', tmp_path / 'links'
    links.mkdir()
    assert export_script.main([f'--BACKUP_DIR={run}/backup', '--out', str(real / '1')]) == 0
    (links / '1').symlink_to(real / '1')
    assert export_script.main([f'--BACKUP_DIR={run}/backup', '--out', str(links / '1'), '--overwrite']) == 0
    assert os.readlink(links / '1') == str(real / '1')
    assert os.listdir(links) == ['1'] and os.listdir(real) == ['1']  # no .replaced-PID, no .partial-PID
    assert os.path.isfile(real / '1' / 'saved_model.pb')


# Run in a fresh interpreter (the suite's TensorFlow is in graph mode): each named pair of
# inputs through the export's signature, its output or its error message saved.
CALL = r"""
import sys
import numpy as np
import tensorflow as tf
complete = tf.saved_model.load(sys.argv[1]).signatures['serving_default']
given, results = np.load(sys.argv[2]), {}
for name in sorted({key.rsplit('.', 1)[0] for key in given.files}):
    try:
        out = complete(images=given[name + '.images'], masks=given[name + '.masks'])
        results[name] = out['completion'].numpy()
    except tf.errors.InvalidArgumentError as error:
        results[name] = np.array(error.message)
np.savez(sys.argv[3], **results)
"""


def through_signature(run, tmp_path, cases):
    """{name: (images, masks)} through the export's signature: {name: uint8 array or error message}."""
    np.savez(tmp_path / 'in.npz', **{f'{name}.{key}': value for name, (images, masks) in cases.items()
                                     for key, value in (('images', images), ('masks', masks))})
    done = subprocess.run([sys.executable, '-c', CALL, str(run / 'output' / 'export' / '1'),
                           str(tmp_path / 'in.npz'), str(tmp_path / 'out.npz')],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = np.load(tmp_path / 'out.npz')
    return {name: out[name] if out[name].dtype == np.uint8 else str(out[name]) for name in out.files}


def test_bool_and_0_1_masks_are_holes_and_bad_images_are_refused_with_what_to_do(run, tmp_path):
    images = synthetic.faces(2, 32, 3)
    holes = np.zeros((2, 32, 32, 1), bool)
    holes[0, 4:12, 8:16] = holes[1, 20:28, 12:20] = True
    masks = holes.astype(np.uint8) * 255
    out = through_signature(run, tmp_path, {
        'uint8 255': (images, masks), 'bool': (images, holes), '0/1 uint8': (images, holes.astype(np.uint8)),
        'floats in [0,1]': (images / 255.0, masks), 'empty batch': (images[:0], masks[:0])})
    expect = out['uint8 255']
    assert (expect[~holes[..., 0]] == images[~holes[..., 0]]).all()
    assert not np.array_equal(expect, images)  # the holes were filled
    assert np.array_equal(out['bool'], expect)
    assert np.array_equal(out['0/1 uint8'], expect)
    assert ('images: an image holds only 0s and 1s, as float images in [0,1] do once cast to uint8; '
            'pass uint8 0-255 (multiply floats by 255)') in out['floats in [0,1]']
    assert 'images: the batch is empty; pass at least one image' in out['empty batch']


# --- test.py ---

@pytest.mark.parametrize('output_dir, message', [
    ('{t}/file', 'cannot write to {t}/file/test/: {t}/file is a file; set --OUTPUT_DIR to a folder'),
    ('/proc/glcic', 'cannot write to /proc/glcic/test/ (No such file or directory); choose another '
                    '--OUTPUT_DIR or fix its permissions'),
])
def test_the_test_set_checks_its_output_folder_before_loading_the_networks(run, tmp_path, output_dir,
                                                                            message, capsys):
    import test as script
    (tmp_path / 'file').write_text('mine')
    np.save(tmp_path / 'x_test.npy', synthetic.faces(8, 32, 0))
    with pytest.raises(errors.UserError) as error:
        script.main([f'--BACKUP_DIR={run}/backup', f'--npy={tmp_path}/x_test.npy',
                     f'--OUTPUT_DIR={output_dir.format(t=tmp_path)}'])
    assert str(error.value) == message.format(t=tmp_path)
    assert 'device:' not in capsys.readouterr().out  # printed just before the networks are built
    assert (tmp_path / 'file').read_text() == 'mine'


def write_rgba(path, rgb, clear):
    """A PNG of rgb with alpha 0 where clear (bool [H,W]) and 255 elsewhere."""
    alpha = np.where(clear, 0, 255).astype(np.uint8)
    assert cv2.imwrite(str(path), np.dstack([rgb[..., ::-1], alpha]))
    return str(path)


def test_a_pngs_transparent_pixels_are_the_hole_without_a_mask(run, tmp_path, capsys):
    import test as script
    rgb = cv2.resize(synthetic.face(64, 1), (52, 40))
    clear = np.zeros((40, 52), bool)
    clear[10:22, 14:30] = True
    photo = write_rgba(tmp_path / 'cut.png', rgb, clear)
    assert cv2.imwrite(str(tmp_path / 'mask.png'), clear.astype(np.uint8) * 255)
    assert script.main([f'--BACKUP_DIR={run}/backup', '--image', photo,
                        '--out', f'{tmp_path}/alpha.png']) == 0
    assert script.main([f'--BACKUP_DIR={run}/backup', '--image', photo, '--mask', f'{tmp_path}/mask.png',
                        '--out', f'{tmp_path}/mask_out.png']) == 0
    by_alpha, by_mask = (cv2.imread(str(tmp_path / f'{n}.png')) for n in ('alpha', 'mask_out'))
    assert np.array_equal(by_alpha, by_mask)
    assert (by_alpha[~clear] == rgb[..., ::-1][~clear]).all()
    said = capsys.readouterr().out
    assert (f'note: {photo} has 192 transparent pixels; the hole is --mask {tmp_path}/mask.png, and the '
            f'colours under them count as known') in said
    plain = tmp_path / 'plain.png'
    assert cv2.imwrite(str(plain), rgb)
    with pytest.raises(errors.UserError, match=re.escape(
            f'--image {plain} needs a hole: --mask FILE (white = hole), --box x,y,w,h, or a PNG whose '
            f'transparent pixels are the hole')):
        script.main([f'--BACKUP_DIR={run}/backup', '--image', str(plain)])


# --- app.py: starting ---

@pytest.mark.parametrize('args, message', [
    (['--OUTPUT_DIR={t}/file'],
     'cannot write to {t}/file/app/: {t}/file is a file; set --OUTPUT_DIR to a folder'),
    (['--OUTPUT_DIR=/proc/glcic'], 'cannot write to /proc/glcic/app/ (No such file or directory); choose '
                                   'another --OUTPUT_DIR or fix its permissions'),
    (['--host', 'no-such-host.invalid'], '--host no-such-host.invalid: no such address ('),
    (['--port', '{port}'], '--port {port} is in use on 127.0.0.1 (another app.py?): stop what listens there, '
                           'or choose another --port'),
])
def test_the_page_says_why_it_cannot_start(run, tmp_path, args, message, capsys):
    import socket
    if importlib.util.find_spec('gradio') is None:
        pytest.skip(f'Gradio is not installed ({app.INSTALL})')
    (tmp_path / 'file').write_text('mine')
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        fill = {'t': tmp_path, 'port': port}
        with pytest.raises(errors.UserError) as error:
            app.main([f'--BACKUP_DIR={run}/backup', f'--OUTPUT_DIR={tmp_path}/out',
                      *[a.format(**fill) for a in args]])
    assert str(error.value).startswith(message.format(**fill)), error.value
    assert 'open http' not in capsys.readouterr().out
    assert (tmp_path / 'file').read_text() == 'mine'


# --- app.py: the running page ---

_spec = importlib.util.spec_from_file_location('app_screenshot',
                                               os.path.join(ROOT, 'docs', 'app_screenshot.py'))
page = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(page)


def peak_kb(pid):
    """The process's peak resident memory so far (VmHWM), kB."""
    with open(f'/proc/{pid}/status') as f:
        return int(next(line for line in f if line.startswith('VmHWM:')).split()[1])


@pytest.fixture(scope='module')
def server(run, tmp_path_factory):
    """python app.py on a free port of 127.0.0.1, its output in a file; OUTPUT_DIR/app/ holds
    what stopped pages left (an upload's empty temporary file, an empty folder, a killed page's
    folder and lock) and the folder of a page still running (its lock held here)."""
    if importlib.util.find_spec('gradio') is None:
        pytest.skip(f'Gradio is not installed ({app.INSTALL})')
    import filelock
    tmp = tmp_path_factory.mktemp('server')
    folder = tmp / 'out' / 'app'
    for name in ('9f1c0a', 'page-1', 'page-2'):
        (folder / name).mkdir(parents=True)
    (folder / 'tmpab12cd34').write_bytes(b'')
    (folder / 'page-1.lock').write_bytes(b'')
    (folder / 'page-1' / 'photo-x.png').write_bytes(b'left')
    (folder / 'page-2' / 'photo-y.png').write_bytes(b'in use')
    running = filelock.FileLock(str(folder / 'page-2.lock'), timeout=0)
    running.acquire()
    port = page.free_port()
    log = open(tmp / 'log.txt', 'w')
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, 'app.py'), f'--BACKUP_DIR={run}/backup',
                                f'--OUTPUT_DIR={tmp}/out', f'--port={port}'], cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT, text=True)
    url = f'http://127.0.0.1:{port}/'
    try:
        from gradio_client import Client
        for _ in range(240):
            assert process.poll() is None, (tmp / 'log.txt').read_text()
            try:
                Client(url, verbose=False)
                break
            except Exception:
                time.sleep(0.5)
        yield {'url': url, 'process': process, 'folder': folder, 'log': tmp / 'log.txt', 'tmp': tmp}
    finally:
        page.stop_server(process)
        log.close()
        running.release()


@pytest.mark.slow
def test_a_start_deletes_what_stopped_pages_left_and_keeps_running_ones(server):
    left = sorted(os.listdir(server['folder']))
    own = f'page-{server["process"].pid}'
    assert left == sorted([own, f'{own}.lock', 'page-2', 'page-2.lock'])
    assert (server['folder'] / 'page-2' / 'photo-y.png').read_bytes() == b'in use'
    assert not os.path.exists(os.path.join(ROOT, 'app.pyi'))  # Gradio's stub of a component subclass


def layer_file(path, hole):
    layer = np.zeros(hole.shape + (4,), np.uint8)
    layer[hole] = (255, 0, 255, 178)
    assert cv2.imwrite(str(path), layer)
    return str(path)


def editor(*layers):
    from gradio_client import handle_file
    return {'background': None, 'layers': [handle_file(p) for p in layers], 'composite': None}


@pytest.mark.slow
def test_identical_requests_at_once_all_succeed(server, tmp_path):
    from gradio_client import Client, handle_file
    rgb = cv2.resize(synthetic.face(64, 2), (90, 70))
    assert cv2.imwrite(str(tmp_path / 'same.png'), rgb[..., ::-1])
    hole = np.zeros((70, 90), bool)
    hole[20:40, 30:50] = True
    layer = layer_file(tmp_path / 'layer.png', hole)
    failures, done = [], []

    def client(i):
        talk = Client(server['url'], verbose=False, download_files=str(tmp_path / f'downloads{i}'))
        for _ in range(3):
            try:
                talk.predict(handle_file(str(tmp_path / 'same.png')), api_name='/load')
                *columns, message = talk.predict(editor(layer), 'as painted', 'own size',
                                                 api_name='/complete')
                assert message.endswith('ms in all.'), message
                for column in columns[1:]:  # no pretrained checkpoint: the first column is empty
                    image = cv2.imread(column['value'])[..., ::-1]
                    assert (image[~hole] == rgb[~hole]).all()
                done.append(i)
            except Exception as error:
                failures.append(f'{type(error).__name__}: {error}')

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert failures == [] and len(done) == 18
    assert 'Traceback' not in server['log'].read_text()
    empty = [name for folder, _, names in os.walk(server['folder']) for name in names
             if name.startswith('tmp') and os.path.getsize(os.path.join(folder, name)) == 0]
    assert empty == []  # no temporary file left per upload


@pytest.mark.slow
def test_a_file_the_page_handed_out_is_never_rewritten(server, tmp_path):
    """What broke identical requests at once: Gradio rewrote the file named by the image's
    content for every request, while an earlier one was still downloading it."""
    from gradio_client import Client, handle_file
    assert cv2.imwrite(str(tmp_path / 'me.png'), cv2.resize(synthetic.face(64, 3), (60, 48)))
    talk = Client(server['url'], verbose=False, download_files=False)
    first = talk.predict(handle_file(str(tmp_path / 'me.png')), api_name='/load')[0]['background']['path']
    before = os.stat(first).st_mtime_ns
    second = talk.predict(handle_file(str(tmp_path / 'me.png')), api_name='/load')[0]['background']['path']
    assert os.stat(first).st_mtime_ns == before
    assert second != first


@pytest.mark.slow
def test_a_huge_paint_layer_is_refused_from_its_header(server, tmp_path):
    from gradio_client import Client, handle_file
    talk = Client(server['url'], verbose=False, download_files=False)
    assert cv2.imwrite(str(tmp_path / 'me.png'), cv2.resize(synthetic.face(64, 4), (90, 70)))
    talk.predict(handle_file(str(tmp_path / 'me.png')), api_name='/load')
    bomb = np.zeros((12000, 12000, 4), np.uint8)
    bomb[:10, :10] = 255
    assert cv2.imwrite(str(tmp_path / 'bomb.png'), bomb)
    del bomb
    assert os.path.getsize(tmp_path / 'bomb.png') < 1_000_000
    before = peak_kb(server['process'].pid)
    said = talk.predict(editor(str(tmp_path / 'bomb.png')), 'as painted', 'own size',
                        api_name='/complete')[-1]
    assert said == 'The paint is 12000x12000 but the photo is 90x70: upload the photo again and paint on it.'
    assert peak_kb(server['process'].pid) - before < 100_000  # decoded, it would be 576 MB
    assert server['process'].poll() is None


@pytest.mark.slow
def test_hostile_requests_are_one_line_each_in_the_terminal(server, tmp_path):
    import httpx
    fake = {'path': '/etc/passwd', 'meta': {'_type': 'gradio.FileData'}}
    calls = [('complete', [{'background': None, 'layers': [], 'composite': None}, 'as painted', '77']),
             ('complete', [{'background': None, 'layers': [], 'composite': None}, 'sideways', 'own size']),
             ('complete', [{'background': None, 'layers': [fake], 'composite': None}, 'as painted',
                           'own size']),
             ('complete', [{'background': None, 'layers': [{'meta': {'_type': 'gradio.FileData'}, 'pth': 3}],
                            'composite': None}, 'as painted', 'own size']),
             ('load', [fake])]
    start = len(server['log'].read_text().splitlines())
    for name, data in calls:
        event = httpx.post(f'{server["url"]}gradio_api/call/{name}', json={'data': data}).json()['event_id']
        answer = httpx.get(f'{server["url"]}gradio_api/call/{name}/{event}', timeout=120).text
        assert answer.startswith('event: error'), answer
    time.sleep(1)
    said = server['log'].read_text().splitlines()[start:]
    assert len(said) == len(calls) and all(line.startswith('refused a request: ') for line in said), said
    assert "Value: 77 is not in the list of choices" in said[0]
    assert 'Cannot move /etc/passwd to the gradio cache dir because it was not uploaded' in said[2]
    assert server['process'].poll() is None


@pytest.mark.slow
def test_a_pngs_transparent_pixels_are_the_hole_on_the_page(server, tmp_path):
    from gradio_client import Client, handle_file
    rgb = cv2.resize(synthetic.face(64, 5), (52, 40))
    clear = np.zeros((40, 52), bool)
    clear[10:22, 14:30] = True
    photo = write_rgba(tmp_path / 'cut.png', rgb, clear)
    talk = Client(server['url'], verbose=False, download_files=str(tmp_path / 'downloads'))
    said = talk.predict(handle_file(photo), api_name='/load')[1]
    assert said == ('cut.png: 52x40. Its 192 transparent px are the hole; paint over anything else that '
                    'should go, then press Complete.')
    *columns, message = talk.predict(editor(), 'as painted', 'own size', api_name='/complete')
    assert message.startswith('52x40 photo at its own size, 192 px filled'), message
    for column in columns[1:]:  # no pretrained checkpoint: the first column is empty
        image = cv2.imread(column['value'])[..., ::-1]
        assert (image[~clear] == rgb[~clear]).all()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec('selenium') is None or not os.path.exists(page.CHROMIUM)
                    or not os.path.exists(page.CHROMEDRIVER), reason="needs Selenium and Debian's browser")
def test_a_browser_fills_a_pngs_transparent_pixels_without_paint(server, tmp_path):
    rgb = cv2.resize(synthetic.face(64, 6), (120, 96))
    clear = np.zeros((96, 120), bool)
    clear[30:50, 40:70] = True
    photo = write_rgba(tmp_path / 'cut.png', rgb, clear)
    driver = page.browser()
    try:
        assert page.upload(driver, server['url'], photo) == (
            'cut.png: 120x96. Its 600 transparent px are the hole; paint over anything else that should '
            'go, then press Complete.')
        time.sleep(1)  # the editor draws the photo
        message = page.complete(driver)
        assert message.startswith('120x96 photo at its own size, 600 px filled'), message
        assert page.result_sizes(driver)[1:] == [[120, 96]] * 2
    finally:
        driver.quit()


@pytest.mark.slow
def test_kill_stops_the_page_and_deletes_its_folder(server):
    """Last in this file: it stops the module's server."""
    own = server['folder'] / f'page-{server["process"].pid}'
    assert own.is_dir()
    server['process'].terminate()
    assert server['process'].wait(timeout=60) == 0
    assert sorted(os.listdir(server['folder'])) == ['page-2', 'page-2.lock']
