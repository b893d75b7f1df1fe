"""Shared test setup: tiny sizes so the whole suite runs on 2 CPU cores."""
import os
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import cli  # noqa: E402,F401  quiet TensorFlow logs as the scripts do

import config  # noqa: E402

# 32x32 images with a 16x16 local patch: every layer of the real tables, 16x fewer pixels.
TINY = dict(IMAGE_SIZE=32, LOCAL_SIZE=16, HOLE_MIN=4, HOLE_MAX=10, BATCH_SIZE=8,
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


@pytest.fixture
def tiny_config():
    """config at TINY sizes for in-process tests; restored afterwards."""
    saved = config.as_dict()
    config.set_values(TINY)
    yield config
    config.set_values(saved)
