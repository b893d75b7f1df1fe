"""The browser page: paint a hole in your own photo and see both networks complete it side by side.

    pip install -r requirements-app.txt      # Gradio, an optional install (not in requirements.txt)
    python app.py                            # then open http://127.0.0.1:7860
    python app.py --BACKUP_DIR=runs/a/backup --port 7861
    python app.py --host 0.0.0.0             # other machines too: only on a network you trust

Upload a photo (or pick the example), paint over what should go (or drag across it with
"rectangle around the paint") and press Complete. The columns are the photo at its own size
completed by backup/pretrained (completion only), by backup/latest (completion + discriminator)
and the latter with Poisson blending, each with its time in ms and a download button.

The same path as test.py --image: the networks, settings and architecture come from
BACKUP_DIR/config.json, inference.complete_photo fills the hole at the photo's own size (or
with the short side resized), and every pixel outside the hole comes back unchanged. The
networks are restored once at start. The page writes only under OUTPUT_DIR/app/ (uploads and
results, deleted after an hour and when the page restarts).
"""
import argparse
import collections
import importlib.util
import ipaddress
import os
import time

import cli
import numpy as np

import backup
import config
import evaluate
import inference
import photos
from errors import UserError

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
    def load(cls):
        """Restore BACKUP_DIR's checkpoints (config already applied), or keep why there are none."""
        try:
            found = inference.find_checkpoints()
        except UserError as error:
            return cls(problem=f'{error}. Or the demo: bash demo.sh trains one on synthetic faces in '
                               f'about 10 minutes on a 2-core CPU. Then restart python app.py.')
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
        note = ''
        if height * width > inference.MAX_PIXELS:
            note = (f' It is larger than the {inference.MAX_PIXELS / 1e6:.0f} Mpx the networks '
                    f'complete at full size: choose a resize before you press Complete.')
        return photo, f'{name}: {width}x{height}. Paint over what should go, then press Complete.{note}'

    def complete(self, photo, hole, resize=None):
        """Fill the hole with each network: Result([Column] * 3, message).

        Args: photo uint8 [H,W,3]; hole bool [H,W] (True = fill), or None if nothing was
        painted; resize: None for the photo's own size, else its short side in px.
        """
        if self.problem:
            return Result([], self.problem)
        if photo is None:
            return Result([], 'Upload a photo first, or pick the example.')
        height, width = photo.shape[:2]
        hole = None if hole is None else np.asarray(hole, bool)
        if hole is None or not hole.any():
            return Result([], 'Nothing is painted: paint over what should go, then press Complete.')
        if hole.shape != (height, width):
            return Result([], f'The paint is {hole.shape[1]}x{hole.shape[0]} but the photo is '
                              f'{width}x{height}: upload the photo again and paint on it.')
        if hole.all():
            return Result([], 'The paint covers the whole photo: leave some of it visible for the '
                              'networks to complete from.')
        if resize is not None and resize < inference.SIZE_STEP:
            return Result([], f'Resize {resize}: need at least {inference.SIZE_STEP} px.')
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
            blended = evaluate.blend(evaluate.hide_holes(photo[None], holes), completed[None], holes)[0]
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


def painted_hole(layers, rectangle=False):
    """The hole from the editor's paint layers (RGBA uint8 [H,W,4], all of one size): bool [H,W],
    or None if there are none.

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


def build_page(handler):
    """The Gradio page: a thin layer that turns its widgets into Handler calls."""
    import gradio as gr

    def load(path):
        photo, message = handler.open_photo(path)
        editor = {'background': photo, 'layers': [], 'composite': None} if photo is not None else None
        return [photo, editor, message] + [gr.Image(value=None, label=t) for t in handler.titles()]

    def complete(photo, editor, shape, resize):
        hole = painted_hole((editor or {}).get('layers'), shape == RECTANGLE)
        result = handler.complete(photo, hole, None if resize == OWN_SIZE else int(resize))
        columns = result.columns or [Column(t, None, None) for t in handler.titles()]
        images = [gr.Image(value=c.image, label=c.title if c.ms is None else f'{c.title}: {c.ms:,} ms')
                  for c in columns]
        return images + [result.message]

    intro = ('## Complete your own photo\n1. Upload a photo (or pick the example). 2. Paint over what '
             'should go; the brush size is under the brush button, or pick "rectangle around the paint" '
             'and drag across the part to fill. 3. Press **Complete**. Pixels outside the hole stay '
             'exactly as uploaded.')
    with gr.Blocks(title='glcic: complete your photo', analytics_enabled=False,
                   delete_cache=(KEEP_FILES_S, KEEP_FILES_S)) as page:
        gr.Markdown(intro)
        photo = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label='your photo', type='filepath', elem_id='photo')
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


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to listen on (default 127.0.0.1: this machine only)')
    parser.add_argument('--port', type=int, default=7860, help='port (default 7860)')
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        raise UserError(f'--port {args.port}: need 1-65535')
    return args


def main(argv):
    args = parse_args(backup.apply_run_config(argv))
    if importlib.util.find_spec('gradio') is None:
        raise UserError(f'app.py needs Gradio, an optional install: {INSTALL}')
    out_dir = os.path.abspath(os.path.join(config.OUTPUT_DIR, 'app'))
    os.makedirs(out_dir, exist_ok=True)
    # Gradio keeps uploads and results in this folder: the page writes nowhere else.
    os.environ['GRADIO_TEMP_DIR'] = out_dir
    os.environ['GRADIO_ANALYTICS_ENABLED'] = 'False'
    handler = Handler.load()
    if handler.problem:
        print(f'note: {handler.problem}')
    else:
        for name, info in handler.nets.info.items():
            print(f'{handler.nets.label(name)}: {info["path"]} '
                  f'(epoch {info["epoch"]}, phase {info["phase"]})')
    if not _loopback(args.host):
        print(f'note: listening on {args.host}: anyone who can reach this machine can use the page')
    try:
        page = build_page(handler)
        page.queue(default_concurrency_limit=1)  # one request at a time: each uses every core
        print(f'open http://{args.host}:{args.port} (Ctrl-C stops; files in {out_dir}/)', flush=True)
        page.launch(server_name=args.host, server_port=args.port, max_file_size=f'{MAX_UPLOAD_MB}mb',
                    quiet=True, ssr_mode=False, show_error=False, allowed_paths=EXAMPLES)
    finally:
        handler.close()
    return 0


if __name__ == '__main__':
    cli.run(main)
