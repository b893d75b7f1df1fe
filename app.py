"""The browser page: paint a hole in your own photo and see both networks complete it side by side.

    pip install -r requirements-app.txt      # Gradio, an optional install (not in requirements.txt)
    python app.py                            # then open http://127.0.0.1:7860
    python app.py --BACKUP_DIR=runs/a/backup --port 7861
    python app.py --host 0.0.0.0             # other machines too: only on a network you trust

Upload a photo (or pick the example), paint over what should go (or drag across it with
"rectangle around the paint") and press Complete. The columns are the photo at its own size
completed by backup/pretrained (completion only), by backup/latest (completion + discriminator)
and the latter with Poisson blending, each with its time in ms and a download button.

The same path as test.py --image: the networks come from BACKUP_DIR, their architecture from its
config.json, the other settings from config.py; inference.complete_photo fills the hole at the
photo's own size (or with the short side resized), and every pixel outside the hole comes back
unchanged. A PNG's transparent pixels are a hole too. The networks are restored once at start. The page writes
only under OUTPUT_DIR/app/ (uploads and results, deleted after an hour, when the page stops and
what a stopped page left when one starts).
"""
import argparse
import collections
import contextlib
import errno
import importlib.util
import io
import ipaddress
import os
import shutil
import signal
import socket
import tempfile
import time

from glcic import cli
import cv2
import filelock
import numpy as np

import config
import network
from glcic import backup, blending, evaluate, inference, photos, shipped
from glcic.errors import UserError

ROOT = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = [os.path.join(ROOT, 'docs', 'examples', 'astronaut.png')]  # public domain: docs/examples/README.md
INSTALL = 'pip install -r requirements-app.txt'
MAX_UPLOAD_MB = 20  # larger files are refused before they are read
MAX_UPLOAD_PIXELS = 40_000_000  # larger photos are refused after decoding (120 MB as RGB)
RESIZES = (128, 256, 512, 1024)  # short sides offered for large photos, px
OWN_SIZE = 'own size'
RECTANGLE = 'rectangle around the paint'
KEEP_FILES_S = 3600  # uploads and results older than this are deleted, s
CLEAR_PAINT = "() => document.querySelector('#editor button[aria-label=\"Clear canvas\"]')?.click()"
BRUSH_COLOR = ('#ff00ff', 0.7)  # magenta, see-through: the hole is wherever it was painted
LOCK = '.lock'  # OUTPUT_DIR/app/page-PID.lock is held while page-PID/ is in use

# One output column: its title, the image (uint8 [H,W,3], or None) and the time it took.
Column = collections.namedtuple('Column', 'title image ms')
Result = collections.namedtuple('Result', 'columns message')


class Handler:
    """The page's logic without Gradio: networks restored once, photos and paint in, columns out.

    Every user mistake becomes a message (never an exception), so the server keeps running.
    """

    def __init__(self, nets=None, problem=None):
        self.nets, self.problem = nets, problem

    @classmethod
    def load(cls, which=None):
        """Restore BACKUP_DIR's checkpoints (config already applied), else the shipped model, or
        keep why there are none. which: backup.trained's choice ('shipped' forces that one)."""
        try:
            found = backup.trained(which)
        except UserError as error:
            return cls(problem=f'{error}. Or the demo: bash demo.sh trains one on synthetic faces in '
                               f'about 9 minutes on a 2-core CPU. Then restart python app.py.')
        try:
            return cls(nets=inference.Networks(found))
        except UserError as error:
            return cls(problem=f'{error}. Then restart python app.py.')

    def titles(self):
        """Column titles before any request: what each column will hold."""
        if not self.nets:
            return ['completion only', 'completion + discriminator', '+ Poisson blending']
        return [title for title, _ in self._plan()]

    def _plan(self):
        """[(title, checkpoint name or None)] of the three columns; the last one is blended."""
        have = self.nets.sessions
        if shipped.NAME in have:
            return [(self.nets.label(shipped.NAME), shipped.NAME),
                    (f'no model of your own in {config.BACKUP_DIR}/ (python train.py)', None),
                    (f'{self.nets.label(shipped.NAME)} + Poisson blending', shipped.NAME)]
        plan = [(self.nets.label(n) if n in have else f'no {n} checkpoint in {config.BACKUP_DIR}/',
                 n if n in have else None) for n in (backup.PRETRAINED, backup.LATEST)]
        blended = backup.LATEST if backup.LATEST in have else backup.PRETRAINED
        return plan + [(f'{self.nets.label(blended)} + Poisson blending', blended)]

    def open_photo(self, path):
        """A photo file -> (RGB uint8 [H,W,3] or None, message)."""
        if not path or not os.path.isfile(path):
            return None, 'Upload a photo, or pick the example below it.'
        name = os.path.basename(path)
        size = os.path.getsize(path)
        if size > MAX_UPLOAD_MB * 2 ** 20:
            return None, (f'{name} is {size / 2 ** 20:.1f} MB; the page takes photos up to '
                          f'{MAX_UPLOAD_MB} MB: save it smaller (e.g. as a JPEG) and upload again.')
        try:
            photo = photos.read_image(path, 'photo')
        except UserError as error:
            return None, str(error).replace(path, name)
        height, width = photo.shape[:2]
        if height * width > MAX_UPLOAD_PIXELS:
            return None, (f'{name} is {width}x{height} = {height * width / 1e6:.1f} Mpx; the page '
                          f'takes up to {MAX_UPLOAD_PIXELS / 1e6:.0f} Mpx: scale it down first.')
        try:
            clear = photos.transparent(path, photo.shape)
        except UserError as error:
            return None, str(error).replace(path, name)
        what = 'Paint over what should go'
        if clear is not None:  # kept as the alpha channel: complete() fills it, the editor shows it
            photo = np.dstack([photo, np.where(clear, 0, 255).astype(np.uint8)])
            what = (f'Its {int(clear.sum()):,} transparent px are the hole; paint over anything else '
                    f'that should go')
        note = ''
        if height * width > inference.MAX_PIXELS:
            note = (f' It is larger than the {inference.MAX_PIXELS / 1e6:.0f} Mpx the networks '
                    f'complete at full size: choose a resize before you press Complete.')
        return photo, f'{name}: {width}x{height}. {what}, then press Complete.{note}'

    def complete(self, photo, hole, resize=None):
        """Fill the hole with each network: Result([Column] * 3, message).

        Args: photo uint8 [H,W,3], or [H,W,4] whose alpha 0 is a hole too (open_photo);
        hole bool [H,W] (True = fill), or None if nothing was painted; resize: None for the
        photo's own size, else its short side in px.
        """
        if self.problem:
            return Result([], self.problem)
        if photo is None:
            return Result([], 'Upload a photo first, or pick the example.')
        height, width = photo.shape[:2]
        hole = None if hole is None else np.asarray(hole, bool)
        if photo.shape[2] == 4:
            clear, photo = photo[..., 3] == 0, photo[..., :3]
            hole = clear if hole is None else hole | clear if hole.shape == clear.shape else hole
        if hole is None or not hole.any():
            return Result([], 'Nothing is painted: paint over what should go, then press Complete.')
        if hole.shape != (height, width):
            return Result([], f'The paint is {hole.shape[1]}x{hole.shape[0]} but the photo is '
                              f'{width}x{height}: upload the photo again and paint on it.')
        if hole.all():
            return Result([], 'The paint covers the whole photo: leave some of it visible for the '
                              'networks to complete from.')
        if resize is not None and resize < network.SIZE_STEP:
            return Result([], f'Resize {resize}: need at least {network.SIZE_STEP} px.')
        if resize is None and height * width > inference.MAX_PIXELS:
            return Result([], f'The photo is {width}x{height} = {height * width / 1e6:.1f} Mpx, more '
                              f'than the {inference.MAX_PIXELS / 1e6:.0f} Mpx the networks complete '
                              f'at full size: choose a resize (e.g. 512).')
        request = time.perf_counter()
        columns, took = [], {}
        plan = self._plan()
        try:
            for title, name in plan[:2]:
                if name is None:
                    columns.append(Column(title, None, None))
                    continue
                start = time.perf_counter()
                image = inference.complete_photo(self.nets, name, photo, hole, resize)
                took[name] = (image, _ms(start))
                columns.append(Column(title, *took[name]))
            title, name = plan[2]
            completed, network_ms = took[name]
            start = time.perf_counter()
            # The tail of inference.complete_photo(..., blend=True), without running the network again.
            holes = hole[None, ..., None]
            blended = blending.blend(evaluate.hide_holes(photo[None], holes), completed[None], holes)[0]
            columns.append(Column(title, blended, network_ms + _ms(start)))
        except UserError as error:
            return Result([], str(error))
        size = f'short side resized to {resize} px' if resize else 'its own size'
        return Result(columns, f'{width}x{height} photo at {size}, {int(hole.sum()):,} px filled '
                               f'({hole.mean():.0%}): {_ms(request):,} ms in all.')

    def close(self):
        if self.nets:
            self.nets.close()


def _ms(start):
    return round((time.perf_counter() - start) * 1000)


def read_layers(layers, photo):
    """The editor's paint layers as sent (encoded images, see build_page) -> [uint8 [H,W,C]].

    Each one's size is read from its header and must be the photo's before it is decoded: a
    577 KB PNG can hold 12000x12000 px. Raises UserError with the page's message.
    """
    if photo is None:
        return []
    height, width = photo.shape[:2]
    decoded = []
    for encoded in layers or []:
        if encoded is None:
            continue
        size = photos.image_size(io.BytesIO(encoded))
        if size is None:
            raise UserError('The paint is not an image the page reads: paint on the photo in the page.')
        if tuple(size) != (width, height):
            raise UserError(f'The paint is {size[0]}x{size[1]} but the photo is {width}x{height}: upload '
                            f'the photo again and paint on it.')
        layer = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
        if layer is None or layer.shape[:2] != (height, width):
            raise UserError('The paint could not be read: paint on the photo in the page again.')
        decoded.append(layer if layer.ndim == 3 else layer[..., None])
    return decoded


def painted_hole(layers, rectangle=False):
    """The hole from the editor's paint layers ([H,W,4] with alpha, or [H,W,C] without: all of
    one size): bool [H,W], or None if there are none.

    Every pixel with any paint is filled; rectangle: the box around the paint instead, so a
    stroke dragged from one corner to the opposite one marks a rectangle.
    """
    layers = [np.asarray(layer) for layer in layers or [] if layer is not None]
    if not layers:
        return None
    hole = np.any([layer[..., 3] > 0 if layer.shape[-1] == 4 else layer.max(-1) > 0
                   for layer in layers], axis=0)
    if rectangle and hole.any():
        rows, cols = np.flatnonzero(hole.any(1)), np.flatnonzero(hole.any(0))
        hole[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
    return hole


def build_page(handler, folder):
    """The Gradio page: a thin layer that turns its widgets into Handler calls.

    folder: Gradio's folder (GRADIO_TEMP_DIR), where the images the page shows are written.
    """
    import gradio as gr
    from gradio.data_classes import FileData

    class Page(gr.Blocks):
        """Blocks that refuse a malformed request (a value no widget offers, a file never uploaded,
        a broken file description) with one line in the terminal instead of a traceback."""

        async def preprocess_data(self, *args, **kwargs):
            try:
                return await super().preprocess_data(*args, **kwargs)
            except Exception as error:
                reason = ' '.join(str(error).split())[:300] or type(error).__name__
                print(f'refused a request: {reason}', flush=True)
                raise gr.Error(reason, print_exception=False) from None

    def encoded(file, flatten_on_white=False):
        """What the editor passes on for each image it receives: its bytes, still encoded, so that
        read_layers checks the size in its header before anything decodes it."""
        if isinstance(file, FileData):
            with open(file.path, 'rb') as f:  # under the upload limit: Gradio refuses larger files
                return f.read()
        return file  # the bytes the browser sent, or None

    def shown(image, name):
        """A new PNG file of image (uint8 [H,W,3|4] RGB(A)) in folder, or None.

        Gradio would write arrays to a file named by their content and rewrite it for each
        request, under a download of it still running: each request gets files of its own.
        """
        if image is None:
            return None
        _, encoded = cv2.imencode('.png', image[..., [2, 1, 0, 3][:image.shape[2]]])
        fd, path = tempfile.mkstemp(prefix=f'{name}-', suffix='.png', dir=folder)
        with os.fdopen(fd, 'wb') as f:
            f.write(encoded.tobytes())
        return path

    def load(path):
        photo, message = handler.open_photo(path)
        editor = ({'background': shown(photo, 'photo'), 'layers': [], 'composite': None}
                  if photo is not None else None)
        return [photo, editor, message] + [gr.Image(value=None, label=t) for t in handler.titles()]

    def complete(photo, editor, shape, resize):
        try:
            hole = painted_hole(read_layers((editor or {}).get('layers'), photo), shape == RECTANGLE)
            result = handler.complete(photo, hole, None if resize == OWN_SIZE else int(resize))
        except UserError as error:
            result = Result([], str(error))
        columns = result.columns or [Column(t, None, None) for t in handler.titles()]
        images = [gr.Image(value=shown(c.image, 'completed'),
                           label=c.title if c.ms is None else f'{c.title}: {c.ms:,} ms') for c in columns]
        return images + [result.message]

    intro = ('## Complete your own photo\n1. Upload a photo (or pick the example). 2. Paint over what '
             'should go; the brush size is under the brush button, or pick "rectangle around the paint" '
             'and drag across the part to fill. 3. Press **Complete**. Pixels outside the hole stay '
             'exactly as uploaded.')
    with Page(title='glcic: complete your photo', analytics_enabled=False,
              delete_cache=(KEEP_FILES_S, KEEP_FILES_S)) as page:
        gr.Markdown(intro)
        photo = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label='your photo', type='filepath', elem_id='photo')
                # Gradio's File would leave an empty temporary file behind for each upload it passes on.
                upload._process_single_file = lambda file: file.path
                gr.Examples([[path] for path in EXAMPLES], inputs=upload, label='example (public domain)')
                shape = gr.Radio(['as painted', RECTANGLE], value='as painted', label='hole', elem_id='shape')
                resize = gr.Dropdown([OWN_SIZE] + [str(r) for r in RESIZES], value=OWN_SIZE,
                                     label='resize (short side, px) for large photos', elem_id='resize')
                button = gr.Button('Complete', variant='primary', elem_id='complete')
            with gr.Column(scale=2):
                editor = gr.ImageEditor(label='paint over what should go', type='numpy', image_mode='RGBA',
                                        sources=[], transforms=[], layers=False, format='png',
                                        brush=gr.Brush(colors=[BRUSH_COLOR], color_mode='fixed'),
                                        eraser=gr.Eraser(), elem_id='editor')
                # Not a subclass: Gradio writes a .pyi file beside the module of every component class.
                editor.convert_and_format_image = encoded
        message = gr.Markdown(handler.problem or 'Upload a photo, or pick the example.', elem_id='message')
        with gr.Row():
            outputs = [gr.Image(label=title, type='numpy', format='png', interactive=False,
                                buttons=['download'], elem_id=f'result{i}')
                       for i, title in enumerate(handler.titles())]
        # The paint is cleared in the browser first: Gradio 6's editor hangs when a photo of
        # another size replaces one with paint on it.
        upload.change(None, None, None, js=CLEAR_PAINT).then(
            load, [upload], [photo, editor, message] + outputs, api_name='load')
        button.click(complete, [photo, editor, shape, resize], outputs + [message], api_name='complete')
    return page


def _loopback(host):
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any address


def check_listen(host, port):
    """Raise UserError saying why the page could not listen on host:port, if it could not.

    Gradio says "Cannot find empty port" for every reason, and it also needs the port free on
    127.0.0.1, whatever the host.
    """
    for address in dict.fromkeys((host, '127.0.0.1')):
        try:
            family, kind, proto, _, where = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0]
        except socket.gaierror as error:
            raise UserError(f'--host {host}: no such address ({error.strerror}); give an IP address of '
                            f'this machine, e.g. 127.0.0.1 or 0.0.0.0')
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            try:
                probe.bind(where)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise UserError(f'--port {port} is in use on {address} (another app.py?): stop what '
                                    f'listens there, or choose another --port')
                if error.errno == errno.EADDRNOTAVAIL:
                    raise UserError(f'--host {host} is not an address of this machine: use 127.0.0.1, '
                                    f'or 0.0.0.0 for all of its addresses')
                raise UserError(f'cannot listen on {address}:{port} ({error.strerror}); choose another '
                                f'--port')


def clean(out_dir):
    """Delete what stopped pages left in out_dir; keep the folders of running ones.

    A page works in out_dir/page-PID/ and holds page-PID.lock while it runs; the system drops
    the lock when the process dies, however it ends.
    """
    for name in sorted(os.listdir(out_dir)):
        path = os.path.join(out_dir, name)
        if name.endswith(LOCK):
            continue
        lock = filelock.FileLock(path + LOCK, timeout=0) if os.path.exists(path + LOCK) else None
        try:
            if lock:
                lock.acquire()
        except filelock.Timeout:
            continue  # a running page's folder
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
        finally:
            if lock:
                lock.release()
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path + LOCK)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to listen on (default 127.0.0.1: this machine only)')
    parser.add_argument('--port', type=int, default=7860, help='port (default 7860)')
    parser.add_argument('--model', choices=[shipped.NAME],
                        help='complete with the shipped face model even when BACKUP_DIR has one of your own')
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        raise UserError(f'--port {args.port}: need 1-65535')
    return args


def main(argv):
    args = parse_args(backup.apply_run_config(argv))
    if importlib.util.find_spec('gradio') is None:
        raise UserError(f'app.py needs Gradio, an optional install: {INSTALL}')
    check_listen(args.host, args.port)
    out_dir = os.path.abspath(os.path.join(config.OUTPUT_DIR, 'app'))
    photos.make_folder(out_dir)
    folder = os.path.join(out_dir, f'page-{os.getpid()}')
    lock = filelock.FileLock(folder + LOCK, timeout=0)
    lock.acquire()  # no other process has this pid
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill stops as Ctrl-C: folder deleted
    try:
        clean(out_dir)
        os.mkdir(folder)
        return serve(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        lock.release()
        with contextlib.suppress(FileNotFoundError):
            os.remove(folder + LOCK)


def serve(args, folder):
    """Restore the networks and serve the page until Ctrl-C."""
    # Gradio keeps uploads and results in this folder: the page writes nowhere else.
    os.environ['GRADIO_TEMP_DIR'] = folder
    os.environ['GRADIO_ANALYTICS_ENABLED'] = 'False'
    handler = Handler.load(args.model)
    if handler.problem:
        print(f'note: {handler.problem}')
    else:
        for name, info in handler.nets.info.items():
            print(f'{handler.nets.label(name)}: {info["path"]} '
                  f'(epoch {info["epoch"]}, phase {info["phase"]})')
    if not _loopback(args.host):
        print(f'note: listening on {args.host}: anyone who can reach this machine can use the page')
    try:
        page = build_page(handler, folder)
        page.queue(default_concurrency_limit=1)  # one request at a time: each uses every core
        print(f'open http://{args.host}:{args.port} (Ctrl-C stops; files in {folder}/)', flush=True)
        page.launch(server_name=args.host, server_port=args.port, max_file_size=f'{MAX_UPLOAD_MB}mb',
                    quiet=True, ssr_mode=False, show_error=False, allowed_paths=EXAMPLES)
    finally:
        handler.close()
    return 0


if __name__ == '__main__':
    cli.run(main)
