"""Shared test setup: tiny sizes so the whole suite runs on 2 CPU cores."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading

import filelock
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from glcic import cli  # noqa: E402,F401  quiet TensorFlow logs as the scripts do

import config  # noqa: E402

# 32x32 images with a 16x16 local patch and 1/8 of the channels: every layer of the real
# tables, 16x fewer pixels, a checkpoint of ~4 MB instead of ~270 MB.
TINY = dict(IMAGE_SIZE=32, LOCAL_SIZE=16, HOLE_MIN=4, HOLE_MAX=10, BATCH_SIZE=8, WIDTH=8,
            BN_RECALIBRATE_BATCHES=2, LOG_EVERY=5)


def tiny_args(tmp, **extra):
    """Command-line overrides for a tiny run whose files all live under tmp."""
    values = {**TINY, 'NPY_DIR': f'{tmp}/npy', 'BACKUP_DIR': f'{tmp}/backup',
              'OUTPUT_DIR': f'{tmp}/output', 'IMAGE_DIR': f'{tmp}/images', **extra}
    return [f'--{k}={v}' for k, v in values.items()]


def run_script(script, *args, timeout=300, ignore_sigint=False):
    """Run a top-level script in a fresh interpreter, as a user would (ignore_sigint: as a
    shell's background job starts it)."""
    def ignore():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=ignore if ignore_sigint else None)


@pytest.fixture(autouse=True)
def keep_config():
    """Scripts' main() apply overrides and config.json; every test starts from the same settings."""
    saved = config.as_dict()
    yield
    config.set_values(saved)


@pytest.fixture
def tiny_config():
    """config at TINY sizes for in-process tests; restored afterwards."""
    saved = config.as_dict()
    config.set_values(TINY)
    yield config
    config.set_values(saved)


# The model of trained_run: 69 synthetic faces, 57 for training (7 steps of 8 an epoch) and 12
# for testing (two grids of test.py). Six epochs of phase 1 at 3x the learning rate beat the
# mean-pixel fill on every column of test.py; one of phase 2, one of phase 3; two saves kept.
TRAINED_IMAGES, TRAINED_RATIO, TRAINED_STEPS = 69, 0.83, 7
TRAINED = dict(PRETRAIN_EPOCH=6, D_EPOCH=1, MAX_EPOCH=8, KEEP_CHECKPOINTS=1, LEARNING_RATE=3e-3)


def _shared_folder(factory):
    """The session's temporary folder: under pytest-xdist the one above each worker's own."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base


def _train_shared_model(base):
    """Train trained_run's model in base/trained_run, once per session (for every xdist worker)."""
    tmp, done = base / 'trained_run', base / 'trained_run.done'
    with filelock.FileLock(str(base / 'trained_run.lock')):
        if not done.exists():
            args = tiny_args(tmp, TRAIN_RATIO=TRAINED_RATIO, **TRAINED)
            made = run_script('to_npy.py', '--demo', str(TRAINED_IMAGES), *args)
            assert made.returncode == 0, made.stderr
            trained = run_script('train.py', *args)
            assert trained.returncode == 0, trained.stderr
            done.write_text(json.dumps(identities(tmp)))
    return tmp, done


def pytest_collection_modifyitems(session, config, items):
    """Train trained_run's model in the background from the start, and run the tests that need it
    last: waiting for it when the first of them came left a worker idle for most of a minute."""
    items.sort(key=lambda item: 'trained_run' in item.fixturenames)  # stable: the same order on every worker
    if (os.environ.get('PYTEST_XDIST_WORKER', 'gw0') == 'gw0' and not config.option.collectonly
            and any('trained_run' in item.fixturenames for item in items)):
        base = _shared_folder(config._tmp_path_factory)
        threading.Thread(target=_train_shared_model, args=(base,), name='trained_run').start()


@pytest.fixture(scope='session')
def trained_run(tmp_path_factory):
    """A tiny model trained by train.py through all three phases, shared by every test that only
    reads it: its folder, with npy/, backup/ (pretrained, latest-49, latest-56) and output/.
    A test that writes into these folders copies them first. Trained once per session, in the
    background from the start (pytest_collection_modifyitems); a test that needs it waits."""
    tmp, done = _train_shared_model(_shared_folder(tmp_path_factory))
    yield tmp
    # Tests hard-link these files; one written in place would change every copy and the tests
    # running beside it (a checkpoint file rewritten in place once failed another worker's test).
    made, now = json.loads(done.read_text()), identities(tmp)
    changed = {name for name in {*made, *now} if made.get(name) != now.get(name)}
    assert not changed, f'a test wrote into the shared trained_run (copy before changing): {sorted(changed)}'


def identities(folder):
    """{path: [inode, size, mtime_ns]} of the files under folder's npy/ and backup/."""
    return {str(p.relative_to(folder)): [p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns]
            for sub in ('npy', 'backup') for p in sorted((folder / sub).iterdir())
            if p.is_file() and p.name != 'train.lock'}


def free_ports(count):
    """Ports at 127.0.0.1 that nothing listens on (bound, then released)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def tiny_graph(seed=0, **values):
    """The training graph at TINY sizes with `values` set, initialised: (model, session)."""
    import tensorflow as tf
    from glcic import graphs
    tf1 = tf.compat.v1
    config.set_values(values)
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)
        model = graphs.Training()
        # Grappler off: the same ops, without 1-3 s of graph rewriting at each op's first run.
        settings = tf1.ConfigProto()
        settings.graph_options.rewrite_options.disable_meta_optimizer = True
        sess = tf1.Session(graph=graph, config=settings)
        sess.run([tf1.global_variables_initializer(), tf1.local_variables_initializer()])
    return model, sess


@pytest.fixture
def no_shipped(monkeypatch, tmp_path):
    """A copy of the repository without the shipped face model (models/faces128/)."""
    from glcic import shipped
    monkeypatch.setattr(shipped, 'FOLDER', str(tmp_path / 'no-shipped-model'))


def untrained_checkpoint(root, **settings):
    """to_npy.py's 20 demo faces and train.py's latest-0 (no step) under root, with the tiny settings
    and `settings` on top; config and the signal handlers as they were."""
    import tensorflow as tf
    import to_npy
    import train
    to_npy.main(['--demo', '20', *tiny_args(root, **settings)])
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    saved = config.as_dict()
    try:
        with tf.Graph().as_default():
            assert train.main(tiny_args(root, MAX_EPOCH=0, BN_RECALIBRATE_BATCHES=0, **settings)) == 0
    finally:
        config.set_values(saved)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return root


def train_in_process(folder, capsys, *args):
    """train.main on the files under folder, in a graph of its own: (exit status, printed)."""
    import gc
    import tensorflow as tf
    import train
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with tf.Graph().as_default():
            status = train.main([*tiny_args(folder), *args])
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        gc.collect()  # main()'s frames in a reference cycle may still hold BACKUP_DIR's lock file
    return status, capsys.readouterr().out
