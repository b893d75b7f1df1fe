"""Fault injection: nothing lost, clear errors.

Each test runs the real scripts (train.py, to_npy.py, test.py) in subprocesses on the
CPU at 32x32 and then hurts them: kill -9 at chosen and random moments, Ctrl-C and
SIGTERM, damaged checkpoints, a second trainer on the same backup/, a NaN loss, a full
disk, bad photos and bad inputs. Every run uses its own temporary NPY_DIR, BACKUP_DIR and
OUTPUT_DIR. Backups are cloned with hard links, which is safe because TensorFlow and
backup.py only ever replace files (write + rename), never edit them.

Run with -s to see what each kill hit and what it lost.
"""
import csv
import filecmp
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import TRAINED, TRAINED_STEPS

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
ENV = {**os.environ, 'PYTHONUNBUFFERED': '1', 'TF_CPP_MIN_LOG_LEVEL': '3'}
SIZE = ['--IMAGE_SIZE=32', '--LOCAL_SIZE=16', '--HOLE_MIN=4', '--HOLE_MAX=10']
TRAIN = [*SIZE, '--BATCH_SIZE=8', '--WIDTH=8', '--BN_RECALIBRATE_BATCHES=2']
DEMO_IMAGES = 60  # -> 57 training images
STEPS = 57 // 8  # steps per epoch at BATCH_SIZE=8, as in trained_run
LAST, PREVIOUS = (f'latest-{epochs * TRAINED_STEPS}' for epochs in (TRAINED['MAX_EPOCH'], TRAINED['MAX_EPOCH'] - 1))
SEED = int(os.environ.get('GLCIC_FAULT_SEED', '20250101'))  # timings of the random kills

pytestmark = pytest.mark.skipif(not sys.platform.startswith('linux'),
                                reason='signals, flock and mount namespaces as on Linux')

# TensorFlow's own start-up lines, printed before any log level applies.
TF_NOISE = re.compile(r'^(WARNING: All log messages before absl::InitializeLog'
                      r'|[IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\]'
                      r'|To enable the following instructions)')
PROGRESS = re.compile(r'^\s*(phase \d epoch \d+|decoding):.*\]\s*$')
BAR = re.compile(r'phase (\d) epoch (\d+):\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)')
RESUMED = re.compile(r'resumed (\S+): phase (\d+), epoch (\d+), batch (\d+), step (\d+)')


# --- helpers -------------------------------------------------------------------------

def dirs(npy, backup, output):
    return [f'--NPY_DIR={npy}', f'--BACKUP_DIR={backup}', f'--OUTPUT_DIR={output}']


class Proc:
    """A script started in the background; stdout/stderr go to files so nothing blocks."""

    def __init__(self, args, log_dir, name, **popen):
        self.name = name
        self.out_path, self.err_path = log_dir / f'{name}.out', log_dir / f'{name}.err'
        with open(self.out_path, 'w') as out, open(self.err_path, 'w') as err:
            self.proc = subprocess.Popen([PY, *args] if args[0].endswith('.py') else args,
                                         cwd=REPO, env=ENV, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, **popen)
        self.pid = self.proc.pid

    def stdout(self):
        return self.out_path.read_text(errors='replace')

    def stderr(self):
        return self.err_path.read_text(errors='replace')

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f'{self.name} did not finish within {timeout} s\n{self.tail()}')

    def tail(self, chars=2500):
        return (f'--- stdout of {self.name}:\n{self.stdout()[-chars:]}\n'
                f'--- stderr of {self.name}:\n{self.stderr().replace(chr(13), chr(10))[-chars:]}')

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run(args, timeout=180, **popen):
    """Run a script to the end; returns CompletedProcess with text output."""
    return subprocess.run([PY, *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout, **popen)


def one_line_error(stderr, context=''):
    """The single `error: ...` line the user sees (TensorFlow start-up noise and progress bars aside)."""
    assert 'Traceback' not in stderr, f'{context}: traceback instead of a one-line error:\n{stderr[-3000:]}'
    lines = [line for line in stderr.replace('\r', '\n').splitlines()
             if line.strip() and not TF_NOISE.match(line) and not PROGRESS.match(line)]
    assert len(lines) == 1 and 'error: ' in lines[0], \
        f'{context}: expected one "error: ..." line, got:\n' + '\n'.join(lines)
    return lines[0][lines[0].index('error: '):]


def go_on(epochs):
    """Settings that resume trained_run (in phase 3 by now) for `epochs` more epochs."""
    return ['--PRETRAIN_EPOCH=1', '--D_EPOCH=1', f'--MAX_EPOCH={TRAINED["MAX_EPOCH"] + epochs}']


def pointer(backup):
    """The checkpoint name the `checkpoint` file points at (read as text, no TensorFlow)."""
    try:
        text = (Path(backup) / 'checkpoint').read_text()
    except FileNotFoundError:
        return None
    match = re.search(r'^model_checkpoint_path: "(.*)"', text, re.M)
    return match.group(1) if match else None


def step_of(name):
    return int(name.rsplit('-', 1)[1]) if name and name.startswith('latest-') else -1


def read_checkpoint(prefix):
    """({variable: digest of its bytes, dtype and shape}, state counters) of a checkpoint.

    Reading every tensor also makes TensorFlow verify each one's checksum.
    """
    import tensorflow as tf
    reader = tf.train.load_checkpoint(str(prefix))
    digests, finite = {}, True
    for name in sorted(reader.get_variable_to_dtype_map()):
        value = reader.get_tensor(name)
        digests[name] = (hashlib.blake2b(np.ascontiguousarray(value).tobytes(), digest_size=16)
                         .hexdigest(), str(value.dtype), value.shape)
        if value.dtype.kind == 'f' and not np.isfinite(value).all():
            finite = False
    state = {k: int(reader.get_tensor(f'state/{k}')) for k in ('phase', 'epoch', 'epoch_step', 'step')}
    return digests, {**state, 'finite': finite}


def file_identities(directory, skip=('train.lock',)):
    """{name: (inode, size, mtime)}: changes if a file is replaced or written to."""
    return {p.name: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
            for p in Path(directory).iterdir() if p.name not in skip}


def clone_backup(src, dst, copy=()):
    """Hard-link a backup (files named in `copy` are real copies, for damaging in place; the small
    text files are always copied, as tests rewrite them)."""
    dst.mkdir(parents=True)
    for path in Path(src).iterdir():
        if path.name != 'train.lock':
            copied = path.name in {*copy, 'checkpoint', 'config.json'}
            (shutil.copy2 if copied else os.link)(path, dst / path.name)
    return dst


def wait_for(predicate, proc, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.proc.poll() is not None:
            pytest.fail(f'{proc.name} exited ({proc.proc.returncode}) before {what}\n{proc.tail()}')
        if time.monotonic() > deadline:
            proc.stop()
            pytest.fail(f'{proc.name}: no {what} within {timeout} s\n{proc.tail()}')
        time.sleep(0.01)


def progress(stderr):
    """(phase, epoch, batches done) of the last progress bar, or None."""
    bars = BAR.findall(stderr)
    return tuple(int(v) for v in bars[-1][:3]) if bars else None


def trained_steps(proc, first_step):
    """A predicate: the run has trained at least one step past where it started."""
    def done():
        bar = progress(proc.stderr())
        return bar is not None and (bar[1] - 1) * STEPS + bar[2] > first_step
    return done


# --- fixtures ------------------------------------------------------------------------

@pytest.fixture(scope='module')
def npy_dir(tmp_path_factory):
    npy = tmp_path_factory.mktemp('npy')
    result = run(['to_npy.py', '--demo', str(DEMO_IMAGES), *SIZE, f'--NPY_DIR={npy}'], timeout=60)
    assert result.returncode == 0, result.stderr
    return npy


@pytest.fixture(scope='module')
def trained(trained_run):
    """trained_run's backup/, a finished run (read only: clone_backup it): PREVIOUS (phase 2 done),
    LAST (phase 3), pretrained (phase 1)."""
    backup = trained_run / 'backup'
    assert pointer(backup) == LAST
    for name in (PREVIOUS, LAST, 'pretrained'):
        assert (backup / f'{name}.index').exists(), sorted(os.listdir(backup))
    return backup


# --- 1. kill -9 at any moment --------------------------------------------------------

@pytest.mark.slow
def test_kill_9_at_any_moment_resumes_from_last_save(npy_dir, tmp_path):
    """Five kill -9s (during steps, checkpoint saves, output/ writes, the phase-1 save),
    each followed by a resume; then a no-op resume proves the variables come back
    bit-identical, and a last run finishes all four epochs with nothing counted twice."""
    backup, output = tmp_path / 'backup', tmp_path / 'output'
    # WIDTH=2: checkpoints of ~67 MB, whose writes last long enough for a kill to land inside.
    args = ['train.py', *TRAIN, '--WIDTH=2', *dirs(npy_dir, backup, output), '--PRETRAIN_EPOCH=2',
            '--D_EPOCH=1', '--MAX_EPOCH=4', '--SAVE_MINUTES=0.01', '--KEEP_CHECKPOINTS=1']
    rng = random.Random(SEED)

    def saved_here(view):  # a save completed in this run
        return view['pointer'] is not None and view['pointer'] != view['start']

    def writing(prefix):  # TensorFlow is writing a checkpoint's data file right now
        return lambda view: any(n.startswith(prefix) and 'tempstate' in n and n not in view['before']
                                for n in view['names'])

    def linking(prefix):  # a file of a hard-linked (or copied) save has just appeared
        return lambda view: any(n.startswith(prefix) and n not in view['before'] for n in view['names'])

    def epoch_end(view):  # the epoch-end save is done; sample grid and loss.csv are being written
        return saved_here(view) and step_of(view['pointer']) % STEPS == 0

    rounds = [  # (where the kill should land, trigger, delay after the trigger in s)
        ('a training step', saved_here, rng.uniform(0.1, 0.6)),
        ('a checkpoint save', writing('latest-'), rng.uniform(0.0, 0.03)),
        ('output/ writes after an epoch-end save', epoch_end, 0.0),
        ('the phase-1 save of pretrained', linking('pretrained'), 0.0),
        ('a random moment in phase 2', saved_here, rng.uniform(0.2, 1.2)),
    ]
    report, left_partial, previous = [], [], None
    for k, (label, trigger, delay) in enumerate(rounds, 1):
        proc = Proc(args, tmp_path, f'run{k}')
        try:
            view = {'start': pointer(backup), 'pointer': pointer(backup),
                    'before': set(os.listdir(backup)) if backup.exists() else set()}
            last_seen, seen_at = view['pointer'], None  # seen_at: when this run's last save appeared
            deadline = time.monotonic() + 120
            while True:
                if proc.proc.poll() is not None:
                    pytest.fail(f'round {k}: train.py exited before the kill\n{proc.tail()}')
                view['pointer'] = pointer(backup)
                if view['pointer'] != last_seen:
                    last_seen, seen_at = view['pointer'], time.monotonic()
                view['names'] = os.listdir(backup) if backup.exists() else []
                if trigger(view):
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f'round {k}: never reached "{label}"\n{proc.tail()}')
                time.sleep(0.003)
            end = time.monotonic() + delay
            while time.monotonic() < end:  # keep watching for saves until the kill
                now = pointer(backup)
                if now != last_seen:
                    last_seen, seen_at = now, time.monotonic()
                time.sleep(0.002)
            proc.proc.send_signal(signal.SIGKILL)
            proc.proc.wait()
            killed_at = time.monotonic()
        finally:
            proc.stop()
        out, err = proc.stdout(), proc.stderr()

        # The run resumed exactly from the save the previous kill left in charge.
        if previous is not None:
            match = RESUMED.search(out)
            assert match, f'round {k}: did not resume from {previous[0]}\n{proc.tail()}'
            state = previous[1]
            assert match.group(1) == str(backup / previous[0])
            assert tuple(int(g) for g in match.groups()[1:]) == (
                state['phase'], state['epoch'] + 1, state['epoch_step'], state['step'])

        partial = sorted(n for n in os.listdir(backup) if 'tempstate' in n)
        left_partial.append(bool(partial))
        assert (backup / 'train.lock').exists()  # stale lock file; the next run must start anyway
        now = pointer(backup)
        assert now is not None, f'round {k}: no checkpoint after the kill'
        # Nothing completed is lost: the pointer is the last save seen (or one that
        # finished in the last few ms before the kill), never an older one.
        assert step_of(now) >= step_of(last_seen), (k, now, last_seen)
        digests, state = read_checkpoint(backup / now)  # every tensor readable, checksums pass
        assert state['finite'] and state['step'] == step_of(now)
        if previous is not None:
            assert state['step'] >= previous[1]['step']
        bar = progress(err)
        reached = (bar[1] - 1) * STEPS + bar[2] if bar else state['step']
        report.append(f'kill {k} aimed at {label} (delay {delay * 1000:.0f} ms): '
                      f'{"partial " + partial[0] if partial else "no partial file"} left; '
                      f'progress bar at phase {bar[0] if bar else "-"} step ~{reached}; resumes from '
                      f'{now} (phase {state["phase"]}, epoch {state["epoch"] + 1}, batch '
                      f'{state["epoch_step"]}); lost ~{max(0, reached - state["step"])} steps, '
                      + (f'{killed_at - seen_at:.1f} s after that save' if seen_at and now == last_seen
                         else 'no save completed in this run'))
        previous = (now, state, digests)
    print('\n' + '\n'.join(report))
    assert any(left_partial), 'no kill landed inside a checkpoint write; the test lost its aim'

    # Identical variables: a resume that stops at once (MAX_EPOCH = the saved epoch, phases
    # far away, no BN recalibration) writes back exactly what it restored.
    name, state, digests = previous
    result = run([*args, f'--MAX_EPOCH={state["epoch"]}', '--PRETRAIN_EPOCH=1000', '--D_EPOCH=1000',
                  '--BN_RECALIBRATE_BATCHES=0'])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f'resumed {backup / name}:' in result.stdout
    assert pointer(backup) == name
    again, state_again = read_checkpoint(backup / name)
    assert state_again == state
    changed = [v for v in digests if again.get(v) != digests[v]]
    assert not changed and again.keys() == digests.keys(), f'{len(changed)} variables differ: {changed[:5]}'

    # The last run finishes: 4 epochs x 7 steps, each counted once, in phase 3.
    result = run(args, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert 'stopped: reached MAX_EPOCH=4' in result.stdout
    final, final_state = read_checkpoint(backup / pointer(backup))
    assert (final_state['phase'], final_state['epoch'], final_state['epoch_step'],
            final_state['step']) == (3, 4, 0, 4 * STEPS)
    rows = list(csv_rows(output / 'loss.csv'))
    assert [r['epoch'] for r in rows] == ['1', '2', '3', '4'], rows
    assert [r['phase'] for r in rows] == ['1', '1', '2', '3'], rows
    assert all(r['mse'] for r in rows), rows
    # No debris: no partial files, and the Saver still keeps KEEP_CHECKPOINTS + 1 saves.
    names = os.listdir(backup)
    assert not [n for n in names if 'tempstate' in n], names
    kept = sorted(n[:-len('.index')] for n in names if n.startswith('latest-') and n.endswith('.index'))
    listed = re.findall(r'all_model_checkpoint_paths: "(.*)"', (backup / 'checkpoint').read_text())
    assert set(kept) == set(listed) and len(kept) <= 2, (kept, listed)


def csv_rows(path):
    with open(path, newline='') as f:
        yield from csv.DictReader(f)


# --- 2. Ctrl-C and SIGTERM -----------------------------------------------------------

def check_saved_on_signal(proc, backup, seconds, status):
    """The run exited with `status` within seconds, and its save holds every step it took."""
    assert proc.proc.returncode == status, proc.tail()
    assert seconds < 15, f'{seconds:.1f} s from the signal to the exit'
    assert 'Traceback' not in proc.stderr()
    match = re.search(r'saved (\S+); run python train.py to resume', proc.stdout())
    assert match, proc.tail()
    name = Path(match.group(1)).name
    assert pointer(backup) == name
    _, state = read_checkpoint(backup / name)
    assert state['step'] == step_of(name) > step_of(LAST)  # trained on from LAST
    assert state['phase'] == 3 and state['epoch'] * STEPS + state['epoch_step'] == state['step']
    print(f'\nexit {status} {seconds:.1f} s after the signal, saved {name} ({state})')


def signal_and_wait(proc, signum):
    """Send `signum` to the run and return the seconds it took to exit."""
    proc.proc.send_signal(signum)
    start = time.monotonic()
    proc.wait(60)
    return time.monotonic() - start


@pytest.mark.slow
def test_ctrl_c_saves_and_exits_130_within_seconds(trained, npy_dir, tmp_path):
    backup = clone_backup(trained, tmp_path / 'backup')
    proc = Proc(['train.py', *TRAIN, *dirs(npy_dir, backup, tmp_path / 'output'),
                 *go_on(30)], tmp_path, 'sigint')
    try:
        wait_for(trained_steps(proc, step_of(LAST)), proc, 120, 'a training step')
        seconds = signal_and_wait(proc, signal.SIGINT)
    finally:
        proc.stop()
    check_saved_on_signal(proc, backup, seconds, 130)


# --- 3. damaged checkpoints ----------------------------------------------------------

DAMAGE = {  # case: (files copied so they can be damaged, the damage, words the error must hold,
    #                the save it must offer instead: the newest intact one the Saver kept)
    'index cut short': ([f'{LAST}.index'], lambda b: truncate(b / f'{LAST}.index', 3000),
                        [f'{LAST}.index'], PREVIOUS),
    'data cut short': ([f'{LAST}.data-00000-of-00001'],
                       lambda b: truncate(b / f'{LAST}.data-00000-of-00001', share=0.4),
                       [f'{LAST}.data-00000-of-00001'], PREVIOUS),
    'data bytes flipped': ([f'{LAST}.data-00000-of-00001'],
                           lambda b: flip(b / f'{LAST}.data-00000-of-00001', 0.55),
                           [f'{LAST}.data-00000-of-00001'], PREVIOUS),
    'checkpoint points at missing files': ([], lambda b: [p.unlink() for p in b.glob(f'{LAST}.*')],
                                           ['checkpoint', LAST], PREVIOUS),
    # Below, LAST is intact but nothing says it is the newest: starting over would
    # overwrite PREVIOUS and LAST with fresh weights.
    'checkpoint file cut short': (['checkpoint'], lambda b: truncate(b / 'checkpoint', 27),
                                  ['checkpoint'], LAST),
    'checkpoint file deleted': ([], lambda b: (b / 'checkpoint').unlink(), ['checkpoint'], LAST),
}


def truncate(path, size=None, share=None):
    """Keep the first `size` bytes of path, or that `share` of them."""
    size = int(path.stat().st_size * share) if share else size
    assert path.stat().st_size > size
    os.truncate(path, size)


def flip(path, share):
    """Invert the byte at `share` of path's length."""
    offset = int(path.stat().st_size * share)
    with open(path, 'r+b') as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.slow
def test_damaged_checkpoint_one_line_error_and_nothing_overwritten(trained, npy_dir, tmp_path):
    """Each damage in its own copy of the backup; all six runs of train.py's main() share one
    interpreter (see run_main), so TensorFlow is imported once."""
    cases, backups = [], {}
    for i, (case, (copy, damage, _, _)) in enumerate(DAMAGE.items()):
        backup = clone_backup(trained, tmp_path / f'backup{i}', copy)
        damage(backup)
        output = tmp_path / f'output{i}'
        backups[case] = (backup, output, file_identities(backup))
        cases.append([*TRAIN, *dirs(npy_dir, backup, output), *go_on(3)])
    failures = []
    for (case, (backup, output, before)), got in zip(backups.items(), run_main('train.py', cases, tmp_path)):
        try:
            assert got['code'] == 2, f'exit status {got["code"]}\n{got["stdout"][-2000:]}'
            line = one_line_error(got['stderr'], case)
            print(f'\n{case}: {line}')
            for word in DAMAGE[case][2]:
                assert word in line, f'{word!r} not named in: {line}'
            assert '--fresh' in line, line
            # The way out: the newest intact save the Saver kept (not pretrained, not a broken one).
            assert f'--resume {backup / DAMAGE[case][3]} ' in line, line
            assert file_identities(backup) == before, 'files in backup/ changed'
            assert not list(output.rglob('*.*')), 'output/ written'
        except AssertionError as error:
            failures.append(f'{case}: {error}')
    assert not failures, '\n\n'.join(failures)


# --- 4. two trainers, one backup/ ----------------------------------------------------

@pytest.mark.slow
def test_second_trainer_refused_then_sigterm_saves(trained, npy_dir, tmp_path):
    """While one train.py trains, a second on the same backup/ (even with --fresh) is refused;
    then SIGTERM (as from `kill` or a batch system) stops the first cleanly with exit 0."""
    backup = clone_backup(trained, tmp_path / 'backup')
    args = ['train.py', *TRAIN, *dirs(npy_dir, backup, tmp_path / 'output'),
            *go_on(40)]
    first = Proc(args, tmp_path, 'first')
    try:
        wait_for(trained_steps(first, step_of(LAST)), first, 120, 'a training step')
        second = run([*args, '--fresh'])  # --fresh would move the first run's files aside
        assert second.returncode == 2, second.stdout + second.stderr
        line = one_line_error(second.stderr, 'second train.py')
        assert f'pid {first.pid}' in line and str(backup) in line, line
        assert first.proc.poll() is None, 'the first run stopped'
        assert not list(backup.glob('previous-*')), 'the second run moved files aside'
        seconds = signal_and_wait(first, signal.SIGTERM)
    finally:
        first.stop()
    check_saved_on_signal(first, backup, seconds, 0)


# --- 5. NaN ----------------------------------------------------------------------------

@pytest.mark.slow
def test_nan_stops_before_it_is_saved(trained, npy_dir, tmp_path):
    """A huge learning rate blows the weights up within a step or two. SAVE_MINUTES is tiny so
    a save follows every step: a NaN in the weights (not yet in a loss) must not be saved."""
    backup = clone_backup(trained, tmp_path / 'backup')
    before = file_identities(backup, skip=('train.lock', 'config.json'))  # config.json: rewritten at start
    result = run(['train.py', *TRAIN, *dirs(npy_dir, backup, tmp_path / 'output'),
                  *go_on(3), '--LEARNING_RATE=1e30',
                  '--SAVE_MINUTES=0.0001'])
    assert result.returncode == 2, result.stdout + result.stderr[-3000:]
    line = one_line_error(result.stderr, 'NaN run')
    assert re.search(r'\b(nan|inf|non-finite)\b', line, re.I), line
    assert LAST in line and 'LEARNING_RATE' in line, line
    assert pointer(backup) == LAST
    assert file_identities(backup, skip=('train.lock', 'config.json')) == before, \
        'a checkpoint was written or changed'
    for index in backup.glob('*.index'):
        assert read_checkpoint(index.with_suffix(''))[1]['finite'], f'{index.name} holds NaN/Inf'


# --- 6. full disk ----------------------------------------------------------------------

def can_mount_tmpfs(tmp_path):
    probe = tmp_path / 'probe'
    probe.mkdir()
    try:
        return subprocess.run(['unshare', '--mount', 'sh', '-c', f'mount -t tmpfs -o size=1m tmpfs {probe}'],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slow
def test_full_disk_while_saving_keeps_the_good_checkpoint(trained, npy_dir, tmp_path):
    """The disk fills up in the middle of writing a checkpoint.

    Preferred: a real tmpfs in a private mount namespace, larger than the good checkpoint by
    half its data file, so the kernel answers ENOSPC part-way through the new data file.
    Where mounting is not allowed: RLIMIT_FSIZE of half the data file, where the kernel
    answers EFBIG at the same point of the same write() calls. Either way TensorFlow's writer hits a real
    failing write, not a mock.
    """
    good = clone_backup(trained, tmp_path / 'good')
    for name in (PREVIOUS, 'pretrained'):  # just the save in charge, so the tmpfs stays small
        for path in good.glob(f'{name}.*'):
            path.unlink()
    (good / 'checkpoint').write_text(f'model_checkpoint_path: "{LAST}"\n'
                                     f'all_model_checkpoint_paths: "{LAST}"\n')
    backup, after = tmp_path / 'backup', tmp_path / 'after'
    backup.mkdir()
    after.mkdir()
    train = ['train.py', *TRAIN, *dirs(npy_dir, backup, tmp_path / 'output'), *go_on(3),
             '--SAVE_MINUTES=0.0001']
    used = sum(p.stat().st_size for p in good.iterdir())
    half = (good / f'{LAST}.data-00000-of-00001').stat().st_size // 2
    if can_mount_tmpfs(tmp_path):
        how = 'tmpfs'
        script = ('mount -t tmpfs -o size=$1 tmpfs "$2" && cp -a "$3"/. "$2"/ || exit 99; '
                  'shift 4; "$@"; rc=$?; cp -a "$B"/. "$A"/; exit $rc')
        result = subprocess.run(['unshare', '--mount', 'sh', '-c', f'B="$2"; A="$4"; {script}', 'sh',
                                 str(used + half), str(backup), str(good), str(after), PY, *train],
                                cwd=REPO, env=ENV, capture_output=True, text=True, timeout=180)
        assert result.returncode != 99, result.stderr
    else:
        how = 'RLIMIT_FSIZE'
        shutil.copytree(good, backup, dirs_exist_ok=True, copy_function=os.link)

        def limit():
            resource.setrlimit(resource.RLIMIT_FSIZE, (half, half))
        result = subprocess.run([PY, *train], cwd=REPO, env=ENV, capture_output=True, text=True,
                                timeout=180, preexec_fn=limit, restore_signals=False)
        after = backup
    print(f'\nfull disk via {how}: {result.stderr.strip().splitlines()[-1]}')
    assert result.returncode == 2, result.stdout + result.stderr[-3000:]
    line = one_line_error(result.stderr, 'full disk')
    assert 'could not save' in line and str(backup) in line, line
    assert re.search(r'No space left on device|File too large', line), line
    # The good checkpoint is still in charge, byte for byte, with no partial file beside it.
    assert pointer(after) == LAST
    assert sorted(os.listdir(after)) == sorted({*os.listdir(good), 'train.lock'}), os.listdir(after)
    for path in good.glob(f'{LAST}.*'):
        assert filecmp.cmp(path, after / path.name, shallow=False), f'{path.name} changed'


# --- 7. to_npy.py ----------------------------------------------------------------------

def npy_state(npy):
    """Digest of each output file, after loading the arrays completely."""
    state = {}
    for name in ('x_train.npy', 'x_test.npy'):
        path = npy / name
        if path.exists():
            array = np.load(path)  # a half-written file fails here
            assert array.dtype == np.uint8 and array.ndim == 4, (name, array.dtype, array.shape)
        state[name] = hashlib.md5(path.read_bytes()).hexdigest() if path.exists() else None
    meta = npy / 'meta.json'
    state['meta.json'] = json.loads(meta.read_text())['train'] if meta.exists() else None
    return state


def kill_group(proc, sig):
    """Send sig to proc's process group; False if it had already ended."""
    try:
        os.killpg(proc.pid, sig)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.slow
def test_to_npy_killed_anywhere_never_leaves_a_half_written_npy(tmp_path):
    npy = tmp_path / 'npy'
    base = ['to_npy.py', *SIZE, '--IMAGE_SIZE=128', '--LOCAL_SIZE=64', '--HOLE_MAX=48',
            f'--NPY_DIR={npy}', '--demo', '120']
    assert run([*base, '--SEED=1', '--demo', '20']).returncode == 0
    old_files = {p.name: p.read_bytes() for p in npy.iterdir()}
    old = npy_state(npy)
    start = time.monotonic()
    assert run(base).returncode == 0
    seconds = time.monotonic() - start
    new = npy_state(npy)
    rng = random.Random(SEED)

    def put_back_old():
        for path in npy.iterdir():
            path.unlink()
        for name, content in old_files.items():
            (npy / name).write_bytes(content)
        for partial in tmp_path.glob('npy.partial-*'):  # a killed run's, as the next run removes it
            shutil.rmtree(partial)

    def written():
        """Names in the folders to_npy.py writes a new set into (npy.partial-<pid>)."""
        names = []
        for partial in tmp_path.glob('npy.partial-*'):
            try:
                names += os.listdir(partial)
            except FileNotFoundError:  # swapped in meanwhile
                pass
        return names

    def signal_when_writing(proc, sig):
        """Send sig a few ms after x_train.npy's temp file appears (the write takes ~10-30 ms,
        so poll fast); False if the run finished first."""
        while proc.proc.poll() is None:
            if any(n.startswith('.x_train.npy.') for n in written()):  # atomic.replace's temp
                time.sleep(rng.uniform(0, 0.004))
                return kill_group(proc, sig)
            time.sleep(0.0005)
        return False

    # Kills at random moments of the whole run, and right as x_train.npy's temp file appears.
    plan = [rng.uniform(0.2, 1.0) * seconds for _ in range(3)] + [None] * 3
    hit_write = kills = 0
    for k, delay in enumerate(plan):
        for attempt in range(3):
            put_back_old()
            proc = Proc(base, tmp_path, f'to_npy{k}.{attempt}', start_new_session=True)
            try:
                if delay is None:
                    killed = signal_when_writing(proc, signal.SIGKILL)
                else:
                    time.sleep(delay)
                    killed = kill_group(proc, signal.SIGKILL)  # its pool workers too, if any
                proc.proc.wait()
            finally:
                proc.stop()
            state = npy_state(npy)
            for name in state:
                assert state[name] in (old[name], new[name]), f'kill {k}: {name} is neither old nor new'
            assert state in (old, new), f'kill {k}: a mix of the old and the new set'
            if killed:
                kills += 1
                hit_write += any('.tmp' in n for n in written())
                break
    print(f'\nto_npy: {kills} kills, {hit_write} inside a write; every time x_train.npy, x_test.npy '
          f'and meta.json were together the old set or the new one')
    assert hit_write, 'no kill landed inside a write; the test lost its aim'
    # Ctrl-C during the write: clean exit 130, no temp file left, the old or the new data.
    for attempt in range(3):
        put_back_old()
        proc = Proc(base, tmp_path, f'to_npy_int{attempt}', start_new_session=True)
        if signal_when_writing(proc, signal.SIGINT):
            break
        proc.wait(60)
    else:
        pytest.fail('to_npy.py always finished before its write could be interrupted')
    assert proc.wait(30) == 130, proc.tail()
    assert not [n for n in os.listdir(npy) if '.tmp' in n] and not list(tmp_path.glob('npy.partial-*'))
    assert npy_state(npy) in (old, new)


def write_image(path, image, **kw):
    import cv2
    assert cv2.imwrite(str(path), image, **kw)


def face(i, size=64):
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from glcic import synthetic
    return synthetic.face(size, [7, i])[:, :, ::-1].copy()  # BGR for cv2


def test_to_npy_bad_files_skipped_and_listed(tmp_path):
    from PIL import Image
    src = tmp_path / 'photos'
    (src / 'sub').mkdir(parents=True)
    for i in range(4):
        write_image(src / f'good{i}.png', face(i))
    write_image(src / 'sub' / 'good4.jpg', face(4))
    good = {'good0.png', 'good1.png', 'good2.png', 'good3.png', 'good4.jpg'}
    (src / 'corrupt.jpg').write_bytes(np.random.RandomState(0).bytes(5000))
    (src / 'truncated.png').write_bytes((src / 'good0.png').read_bytes()[:200])
    (src / 'empty.png').write_bytes(b'')
    write_image(src / 'huge.jpg', np.full((8000, 8000, 3), 128, np.uint8))
    write_image(src / 'deep16.png', (face(5).astype(np.uint16) * 257))
    Image.fromarray(face(6)[:, :, ::-1]).convert('CMYK').save(src / 'cmyk.jpg')
    frames = [Image.fromarray(face(7 + i)[:, :, ::-1]) for i in range(3)]
    frames[0].save(src / 'animated.gif', save_all=True, append_images=frames[1:], duration=100, loop=0)
    usable = good | {'huge.jpg', 'deep16.png', 'cmyk.jpg'}
    bad = {'corrupt.jpg', 'truncated.png', 'empty.png', 'dangling.png'}
    import cv2  # OpenCV reads GIFs (first frame) since 4.10 or so; older ones must list it as skipped
    (usable if cv2.imdecode(np.fromfile(src / 'animated.gif', np.uint8), cv2.IMREAD_COLOR) is not None
     else bad).add('animated.gif')
    os.symlink(src / 'good1.png', src / 'link_to_good1.png')  # the same photo again
    os.symlink(src / 'gone.png', src / 'dangling.png')
    os.symlink('.', src / 'sub' / 'loop')  # a directory loop: sub/loop/loop/...
    npy = tmp_path / 'npy'
    result = run(['to_npy.py', f'--src={src}', *SIZE, f'--NPY_DIR={npy}'], timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads((npy / 'meta.json').read_text())
    skipped = {Path(p).name: why for p, why in meta['skipped_files'].items()}
    assert set(skipped) == bad, skipped
    assert all(skipped.values()), skipped
    assert f'skipped {len(bad)} unreadable files' in result.stdout
    # Each usable photo once: no copies through the symlink or the loop (they would leak
    # between the train and test splits).
    assert meta['train'] + meta['test'] == len(usable), meta
    images = np.concatenate([np.load(npy / 'x_train.npy'), np.load(npy / 'x_test.npy')])
    assert len({im.tobytes() for im in images}) == len(usable)


def test_to_npy_unreadable_file_skipped_and_listed(tmp_path):
    """chmod 000 does not stop root, so as root the run drops CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH with setpriv: open() then fails with a real EACCES."""
    src = tmp_path / 'photos'
    src.mkdir()
    for i in range(3):
        write_image(src / f'good{i}.png', face(i))
    write_image(src / 'secret.png', face(9))
    os.chmod(src / 'secret.png', 0)
    prefix = []
    if os.geteuid() == 0:
        drop = ['setpriv', '--bounding-set=-dac_override,-dac_read_search', '--inh-caps=-all']
        try:
            probe = subprocess.run([*drop, 'cat', str(src / 'secret.png')], capture_output=True, timeout=30)
        except OSError:
            pytest.skip('running as root without setpriv: cannot make a file unreadable')
        if probe.returncode == 0:
            pytest.skip('running as root and cannot drop CAP_DAC_OVERRIDE: cannot make a file unreadable')
        prefix = drop
    npy = tmp_path / 'npy'
    result = subprocess.run([*prefix, PY, 'to_npy.py', f'--src={src}', *SIZE, f'--NPY_DIR={npy}'],
                            cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads((npy / 'meta.json').read_text())
    assert meta['train'] + meta['test'] == 3
    assert {Path(p).name: why for p, why in meta['skipped_files'].items()} == \
        {'secret.png': 'Permission denied'}


@pytest.mark.parametrize('inherited', [signal.SIG_DFL, signal.SIG_IGN], ids=['sigint-default', 'sigint-ignored'])
def test_to_npy_ctrl_c_while_decoding_exits_cleanly(tmp_path, inherited):
    """Ctrl-C reaches the whole process group (the pool workers too), also when started as a
    shell script's `cmd &`, which inherits SIGINT ignored."""
    src = tmp_path / 'photos'
    src.mkdir()
    write_image(src / 'face.png', face(0, 128))
    for i in range(4000):  # hard links: distinct files, one decode each, made in no time
        os.link(src / 'face.png', src / f'face{i}.png')
    npy = tmp_path / 'npy'
    proc = Proc(['to_npy.py', f'--src={src}', *SIZE, f'--NPY_DIR={npy}'], tmp_path, 'to_npy_decode',
                start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, inherited))
    try:
        wait_for(lambda: re.search(r'decoding:.*\| *[1-9]\d*/', proc.stderr()), proc, 60, 'decoding')
        os.killpg(proc.pid, signal.SIGINT)
        status = proc.wait(30)
    finally:
        if proc.proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stop()
    assert status == 130, proc.tail()
    lines = [line for line in proc.stderr().replace('\r', '\n').splitlines()
             if line.strip() and not PROGRESS.match(line)]
    assert lines == ['interrupted'], lines
    assert not npy.exists() or not list(npy.iterdir())


# --- 8. bad inputs -------------------------------------------------------------------

CASES_RUNNER = r'''
import contextlib, importlib, importlib.util, io, json, sys, traceback
repo, script, cases, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
sys.path.insert(0, repo)
import config
from glcic import cli
spec = importlib.util.spec_from_file_location('script_under_test', script)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
results = []
for argv in cases:
    importlib.reload(config)  # defaults again
    if 'tensorflow' in sys.modules:
        sys.modules['tensorflow'].compat.v1.reset_default_graph()
    sys.argv = [script, *argv]
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        try:
            cli.run(module.main)
            code = 0
        except SystemExit as stop:
            code = stop.code
        except BaseException:
            err.write(traceback.format_exc())
            code = 'exception'
    results.append({'code': code, 'stderr': err.getvalue(), 'stdout': std.getvalue()})
with open(out, 'w') as f:
    json.dump(results, f)
'''


def run_main(script, argvs, tmp_path):
    """Call `cli.run(main)` of one script once per argv, all in one fresh interpreter.

    Same code path as `python script ...` (sys.argv, config defaults, cli's error handling,
    a fresh TensorFlow graph each time) without paying TensorFlow's import for every case.
    Returns [{'code', 'stdout', 'stderr'}] in order; an escaping exception is code 'exception'.
    """
    out = tmp_path / f'{Path(script).stem}_cases.json'
    result = subprocess.run([PY, '-c', CASES_RUNNER, str(REPO), str(REPO / script), json.dumps(argvs),
                             str(out)], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and out.exists(), result.stderr[-3000:]
    return json.loads(out.read_text())


def run_cases(script, cases, tmp_path):
    """[(label, argv, words)]: each must exit 2 with one error line holding all the words."""
    failures = []
    for (label, argv, words), got in zip(cases, run_main(script, [argv for _, argv, _ in cases], tmp_path)):
        try:
            assert got['code'] == 2, f'exit status {got["code"]}\n{got["stderr"][-1500:]}'
            line = one_line_error(got['stderr'], label)
            for word in words:
                assert word in line, f'{word!r} not named in: {line}'
        except AssertionError as error:
            failures.append(f'{script} {label}: {error}')
    return failures


CONFIG_CASES = [  # (overrides, words the message must hold)
    (['--BATCH_SIZE=0'], ['BATCH_SIZE']),
    (['--HOLE_MAX=20'], ['HOLE_MAX', 'LOCAL_SIZE']),
    (['--IMAGE_SIZE=30'], ['IMAGE_SIZE', 'divisible by 4']),
    (['--LOCAL_SIZE=64'], ['LOCAL_SIZE', 'IMAGE_SIZE']),
    (['--BATCH_SIZE=8.5'], ['BATCH_SIZE', 'int']),
    (['--BATCH_SIZE=eight'], ['BATCH_SIZE']),
    (['--LEARNING_RATE=fast'], ['LEARNING_RATE']),
    (['--FLIP=1'], ['FLIP', 'bool']),
    (['--BATCH_SIZ=8'], ['BATCH_SIZ', 'BATCH_SIZE']),
]


def bad_npy_dirs(root, good_npy):
    """{case: NPY_DIR whose x_train.npy and x_test.npy are bad in that way}."""
    good = np.load(good_npy / 'x_train.npy')
    makers = {
        'missing': None,
        'empty (0 bytes)': lambda p: p.write_bytes(b''),
        'not an npy file': lambda p: p.write_text('hello'),
        'cut short': lambda p: p.write_bytes((good_npy / 'x_train.npy').read_bytes()[:5000]),
        'float32': lambda p: np.save(p, good.astype(np.float32)),
        'gray [N,32,32]': lambda p: np.save(p, good[..., 0]),
        'RGBA': lambda p: np.save(p, np.concatenate([good, good[..., :1]], axis=3)),
        '64x64 images': lambda p: np.save(p, np.zeros((20, 64, 64, 3), np.uint8)),
        'no images': lambda p: np.save(p, good[:0]),
        'pickled objects': lambda p: np.save(p, np.array([{'a': 1}] * 3, dtype=object), allow_pickle=True),
    }
    cases = {}
    for i, (case, make) in enumerate(makers.items()):
        npy = root / f'npy{i}'
        npy.mkdir()
        if make:
            for name in ('x_train.npy', 'x_test.npy'):
                make(npy / name)
        cases[case] = npy
    return cases


def test_train_py_bad_inputs_one_line_errors(npy_dir, tmp_path):
    backup, output = tmp_path / 'backup', tmp_path / 'output'
    cases = [(' '.join(bad), [*TRAIN, *dirs(npy_dir, backup, output), *bad], words)
             for bad, words in CONFIG_CASES]
    for case, npy in bad_npy_dirs(tmp_path, npy_dir).items():
        cases.append((f'x_train.npy {case}', [*TRAIN, *dirs(npy, backup, output)],
                      [str(npy / 'x_train.npy')]))
    # Only x_test.npy bad: the message names that one.
    npy = tmp_path / 'npy_test_bad'
    npy.mkdir()
    shutil.copy(npy_dir / 'x_train.npy', npy)
    np.save(npy / 'x_test.npy', np.zeros((3, 32, 32, 3), np.float32))
    cases.append(('x_test.npy float32', [*TRAIN, *dirs(npy, backup, output)], [str(npy / 'x_test.npy')]))
    failures = run_cases('train.py', cases, tmp_path)
    assert not failures, '\n'.join(failures)
    assert not backup.exists() or not [n for n in os.listdir(backup) if n != 'train.lock']


def test_test_py_bad_inputs_one_line_errors(trained, npy_dir, tmp_path):
    if not (REPO / 'test.py').exists():
        pytest.skip('test.py does not exist yet')
    backup = clone_backup(trained, tmp_path / 'backup')
    output = tmp_path / 'output'
    cases = [(' '.join(bad), [*TRAIN, *dirs(npy_dir, backup, output), *bad], words)
             for bad, words in CONFIG_CASES]
    for case, npy in bad_npy_dirs(tmp_path, npy_dir).items():
        cases.append((f'npy {case}', [*TRAIN, *dirs(npy, backup, output)], [str(npy)]))
    failures = run_cases('test.py', cases, tmp_path)
    assert not failures, '\n'.join(failures)
