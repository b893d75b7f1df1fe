"""Crash-safe writes: a file is replaced whole or not at all, never left half-written."""
import contextlib
import errno
import json
import os
import secrets

WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)  # a full or read-only disk


@contextlib.contextmanager
def replace(path, mode='w', **kwargs):
    """Open a new temporary file beside `path`; it replaces `path` only when the block succeeds.

    The temporary name is unique (dot-prefixed, pid and random suffix), so two writers never
    share it and a glob for the final names never sees it. On any error it is removed.
    Yields: the open file object (`mode` 'w' or 'wb', as for open()).
    """
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f'.{name}.{os.getpid()}-{secrets.token_hex(4)}.tmp')
    try:
        with open(tmp, mode.replace('w', 'x'), **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        sync_folder(folder)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def sync_folder(folder):
    """Flush a folder's entries, so a rename in it survives a crash; Windows cannot open a folder."""
    if os.name == 'nt':
        return
    handle = os.open(folder or '.', os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some file systems refuse it; the rename stands anyway
            os.fsync(handle)
    finally:
        os.close(handle)


def write_bytes(path, content):
    with replace(path, 'wb') as f:
        f.write(content)


def write_text(path, text):
    with replace(path, 'w') as f:
        f.write(text)


def write_json(path, value):
    with replace(path) as f:
        json.dump(value, f, indent=2)
