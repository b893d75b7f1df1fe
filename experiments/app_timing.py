"""Time app.py's requests: a 128x128 face and a 512x512 photo, in the handler and through HTTP.

    python experiments/app_timing.py --BACKUP_DIR=backup            # handler and HTTP, 7 requests each
    python experiments/app_timing.py --BACKUP_DIR=backup --repeat 3 --no-http

The photo is the example face (docs/examples/astronaut.png), scaled to each size, with a
centred square hole of a quarter of the side. The handler's time is what the page shows as
"ms in all"; the HTTP time adds the upload of the paint, PNG encoding and the download of the
three results (gradio_client, the page's own API). The first request at a new size is slower
(TensorFlow sets up its kernels for the shape), so it is listed apart from the median.
"""
import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from glcic import cli  # noqa: E402,F401  quiet TensorFlow logs as the scripts do

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import app  # noqa: E402
from glcic import backup  # noqa: E402

SIZES = (128, 512)  # square photos, px


def photo_and_hole(size):
    face = cv2.imread(app.EXAMPLES[0])[..., ::-1]
    photo = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
    hole = np.zeros((size, size), bool)
    hole[size * 3 // 8:size * 5 // 8, size * 3 // 8:size * 5 // 8] = True
    return photo, hole


def summary(times):
    first, rest = times[0], times[1:] or times
    return f'first {first:,.0f} ms, then median {statistics.median(rest):,.0f} ms (min {min(rest):,.0f})'


def time_handler(repeat):
    handler = app.Handler.load()
    if handler.problem:
        raise SystemExit(handler.problem)
    try:
        for size in SIZES:
            photo, hole = photo_and_hole(size)
            totals, columns = [], []
            for _ in range(repeat):
                start = time.perf_counter()
                result = handler.complete(photo, hole)
                totals.append((time.perf_counter() - start) * 1000)
                columns.append([c.ms for c in result.columns])
            per_column = ' | '.join(f'{statistics.median(c[i] for c in columns[1:] or columns):,.0f}'
                                    for i in range(3))
            print(f'handler {size}x{size}: {summary(totals)}; columns (median ms): {per_column}')
    finally:
        handler.close()


def time_http(repeat, app_args):
    path = os.path.join(ROOT, 'docs', 'app_screenshot.py')
    spec = importlib.util.spec_from_file_location('app_screenshot', path)
    page = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(page)
    from gradio_client import Client, handle_file

    process, url = page.start_server(app_args)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            client = Client(url, verbose=False, download_files=tmp)
            for size in SIZES:
                photo, hole = photo_and_hole(size)
                photo_path = os.path.join(tmp, f'{size}.png')
                layer_path = os.path.join(tmp, f'{size}-paint.png')
                cv2.imwrite(photo_path, photo[..., ::-1])
                layer = np.zeros((size, size, 4), np.uint8)
                layer[hole] = 255
                cv2.imwrite(layer_path, layer)
                client.predict(handle_file(photo_path), api_name='/load')
                totals = []
                for _ in range(repeat):
                    start = time.perf_counter()
                    paint = {'background': None, 'layers': [handle_file(layer_path)], 'composite': None}
                    client.predict(paint, 'as painted', app.OWN_SIZE, api_name='/complete')
                    totals.append((time.perf_counter() - start) * 1000)
                print(f'HTTP    {size}x{size}: {summary(totals)}')
    finally:
        page.stop_server(process)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeat', type=int, default=7, help='requests per size (default 7)')
    parser.add_argument('--no-http', action='store_true', help='time the handler only')
    args, rest = parser.parse_known_args(argv)
    backup.apply_run_config(rest)
    print(f'{os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f} (other work on the machine)')
    time_handler(args.repeat)
    if not args.no_http:
        time_http(args.repeat, rest)
    return 0


if __name__ == '__main__':
    cli.run(main)
