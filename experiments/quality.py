"""Completion quality against training time: train each setting for a fixed wall-clock
budget, measure every checkpoint on the held-out test split, draw the curves.

    python experiments/quality.py prepare --src ../shared/faces --NUM_IMAGES=5000
    python experiments/quality.py run paper-b16 --minutes 120 [--KEY=value ...]
    python experiments/quality.py run adv-b16 --from paper-b16:latest-900 --minutes 60 --PRETRAIN_EPOCH=3
    python experiments/quality.py eval paper-b16 [NAME ...] [--newest] [--prune]
    python experiments/quality.py report [NAME ...]

prepare  runs to_npy.py (same arguments) into RUNS/npy/, the one train/test split every run
         shares. RUNS is experiments/runs/ (--root to change it; git ignores it).
run      trains one setting with train.py into RUNS/NAME/{backup,output}/ for --minutes of wall
         clock, then stops it with SIGTERM (train.py finishes its step and saves). A checkpoint
         lands every --every minutes (SAVE_MINUTES) and at each epoch's end, and all are kept.
         RUNS/NAME/run.json holds the start time, the settings, the machine and each
         checkpoint's minute; RUNS/NAME/train.log the output of train.py.
         --from RUN[:CHECKPOINT] starts from a checkpoint of an earlier run (default its newest)
         instead of from scratch, e.g. to change the phases part way: the minutes go on from
         that checkpoint's minute, and eval draws the earlier run's curve up to it.
eval     restores every checkpoint of each run into the graph of its backup/config.json and
         measures the completion of NPY_DIR/x_test.npy with test.py's holes and evaluate.py's
         metrics, with moving-average and with batch statistics, next to mean-pixel fill and
         OpenCV Telea; writes experiments/results/NAME.json, and the run's loss.csv (train.py's
         row per epoch: the losses, d_loss among them) as NAME.loss.csv. --newest measures only the newest
         checkpoint (the others keep their earlier numbers). --prune then deletes all but the
         newest checkpoint (about 0.46 GB each at 128x128); their numbers stay in the json.
         --on TAG=FOLDER measures on another prepared set's test split (a model trained on one
         face set, tested on another), written as NAME@TAG.json.
report   draws experiments/quality.png (hole PSNR and hole L1 against minutes, one line per
         run, the baselines flat) and writes the tables to experiments/results/quality.md
         (--png PATH: the tables go to RESULTS/<its name>.md); --against NAME adds a table of
         every run at NAME's checkpoint minutes, for settings compared at equal time, and each
         run's means over NAME's last --tail minutes (one checkpoint is noisy).

Run one setting at a time on an otherwise idle machine: the x axis is wall-clock time.
"""
import argparse
import datetime
import glob
import importlib.metadata
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the repo's modules

from glcic import cli  # noqa: E402  (quiets TensorFlow's C++ logs before anything imports it)
import config  # noqa: E402
from glcic import atomic, data, errors  # noqa: E402
import numpy as np  # noqa: E402
from glcic import plots  # noqa: E402  (sets matplotlib's file-only backend)
from glcic.plots import plt  # noqa: E402

RUNS_DIR = os.path.join(ROOT, 'experiments', 'runs')  # prepared arrays and one folder per run
RESULTS_DIR = os.path.join(ROOT, 'experiments', 'results')  # NAME.json per run, quality.md
PNG_PATH = os.path.join(ROOT, 'experiments', 'quality.png')  # the curves
EVERY_MINUTES = 10.0  # default minutes between checkpoints (the "every ~10 minutes")
KEEP_ALL = 1000  # KEEP_CHECKPOINTS of a run: more than a day of checkpoints, so none is dropped
STOP_GRACE = 600  # s train.py gets after SIGTERM to finish its step and save; then it is killed
POLL = 1.0  # s between looks at a running train.py
EVAL_BATCH = 32  # images per pass with moving averages (the numbers do not depend on it)
STATS_BATCH = 16  # images per pass with batch statistics: fixed, so every run sees the same batches
RESERVED = ('BACKUP_DIR', 'OUTPUT_DIR', 'SAVE_MINUTES', 'KEEP_CHECKPOINTS')  # run sets these
TELEA, MEAN_FILL = 'OpenCV Telea', 'mean-pixel fill'  # row names, as in test.py's table
FILL_STRETCH = 1.5  # draw the mean-fill line only if it widens the value axis by at most this factor
NEAR_MINUTES = 5.0  # checkpoints of two runs this close count as "at equal minutes"
TAIL_MINUTES = 8.0  # report --against: the last minutes whose checkpoints are averaged
PHASE_MARKERS = {1: 'o', 2: 's', 3: '^'}  # phase 4 (stop rule met) is drawn as phase 3
CURVES = (('hole_psnr', 'hole PSNR (dB), higher is better'),
          ('hole_l1', 'hole L1 (0-255), lower is better'),
          ('sharpness', 'sharpness, 1 = as detailed as the truth'),
          ('identity', 'identity distance, lower is better'))  # drawn when measured (dlib installed)
DEFAULTS = config.as_dict()  # eval applies each run's architecture, split and holes on top of these


def read_json(path, what):
    if not os.path.exists(path):
        raise errors.UserError(f'{path} not found: {what}')
    with open(path) as f:
        return json.load(f)


def shown_path(path):
    """Paths inside the repo relative to it, so the json reads the same on every clone."""
    path = os.path.abspath(path)
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def checkpoints(backup_dir):
    """Prefixes of the kept latest-STEP checkpoints, oldest first (`pretrained` is a copy of one)."""
    found = [p[:-len('.index')] for p in glob.glob(os.path.join(backup_dir, 'latest-*.index'))]
    return sorted(found, key=lambda p: os.path.getmtime(f'{p}.index'))


def saved_minute(path, start):
    """Minutes from the start of the run to the end of this checkpoint's save."""
    return round((os.path.getmtime(f'{path}.index') - start) / 60.0, 3)


def machine():
    cpu = platform.processor() or platform.machine()
    if os.path.exists('/proc/cpuinfo'):
        with open('/proc/cpuinfo') as f:
            names = [line.split(':', 1)[1].strip() for line in f if line.startswith('model name')]
        cpu = names[0] if names else cpu
    # whichever distribution provides the module (tensorflow, tensorflow-cpu, ...), without importing it here
    providers = importlib.metadata.packages_distributions().get('tensorflow', [])
    tf_version = importlib.metadata.version(providers[0]) if providers else 'unknown'
    return {'cpu': cpu, 'cores': os.cpu_count(), 'system': platform.platform(),
            'python': platform.python_version(), 'tensorflow': tf_version}


# --- prepare ---

def prepare(root, argv):
    npy = os.path.join(root, 'npy')
    command = [sys.executable, os.path.join(ROOT, 'to_npy.py'), f'--NPY_DIR={npy}', *argv]
    print(' '.join(command), flush=True)
    return subprocess.run(command).returncode


# --- run ---

def log_lines(path):
    """The log's lines, with tqdm's carriage-return updates as lines of their own."""
    with open(path, errors='replace') as f:
        return [line.strip() for line in re.split(r'[\r\n]', f.read()) if line.strip()]


def branch(source, root, backup_dir):
    """Copy checkpoint RUN[:CHECKPOINT] into backup_dir (train.py --resume starts from it); its run and minute."""
    parent, _, key = source.partition(':')
    parent_record = read_json(os.path.join(root, parent, 'run.json'), f'--from {source}: no run {parent} in {root}/')
    saved = parent_record.get('checkpoints', {})
    key = key or (max(saved, key=saved.get) if saved else '')
    if key not in saved or not os.path.exists(os.path.join(root, parent, 'backup', f'{key}.index')):
        kept = [k for k in saved if os.path.exists(os.path.join(root, parent, 'backup', f'{k}.index'))]
        raise errors.UserError(f'--from {source}: no checkpoint {key or "at all"} in {parent}; '
                               f'it keeps {", ".join(kept) or "none"}')
    os.makedirs(backup_dir, exist_ok=True)
    for path in glob.glob(os.path.join(root, parent, 'backup', f'{key}.*')) + \
            [os.path.join(root, parent, 'backup', 'config.json')]:
        shutil.copy2(path, backup_dir)  # keeps the mtime: the copy stays the oldest checkpoint
    return {'run': parent, 'checkpoint': key, 'minutes': saved[key]}


def run(name, minutes, every, root, argv, source=None):
    if not re.fullmatch(r'[A-Za-z0-9][\w.-]*', name):
        raise errors.UserError(f'run name {name!r}: use letters, digits, ".", "_" and "-"')
    if minutes <= 0 or every <= 0:
        raise errors.UserError(f'--minutes {minutes} --every {every}: both must be > 0')
    rest = config.parse_overrides(argv)
    if rest:
        raise errors.UserError(f'run: unexpected arguments {" ".join(rest)}; settings are --KEY=value')
    given = [arg[2:].partition('=')[0] for arg in argv]
    reserved = [key for key in given if key in RESERVED]
    if reserved:
        raise errors.UserError(f'run sets {", ".join(RESERVED)} itself; drop --{reserved[0]}')
    overrides = {key: getattr(config, key) for key in given}
    folder = os.path.join(root, name)
    if os.path.exists(os.path.join(folder, 'run.json')):
        raise errors.UserError(f'{folder}/ already holds a run: pick another NAME or delete the folder')
    npy = os.path.abspath(config.NPY_DIR) if 'NPY_DIR' in given else os.path.join(root, 'npy')
    if not os.path.exists(os.path.join(npy, 'x_train.npy')):
        raise errors.UserError(f'no prepared images in {npy}/: run python experiments/quality.py prepare '
                               f'--src ../shared/faces (or --demo 200 for synthetic faces) first')
    backup_dir, output_dir = os.path.join(folder, 'backup'), os.path.join(folder, 'output')
    os.makedirs(folder, exist_ok=True)
    start_from = branch(source, root, backup_dir) if source else None
    command = [sys.executable, os.path.join(ROOT, 'train.py'),
               *[arg for arg in argv if not arg.startswith('--NPY_DIR=')],
               f'--NPY_DIR={npy}', f'--BACKUP_DIR={backup_dir}', f'--OUTPUT_DIR={output_dir}',
               f'--SAVE_MINUTES={float(every)!r}', f'--KEEP_CHECKPOINTS={KEEP_ALL}',
               *([f'--resume={os.path.join(backup_dir, start_from["checkpoint"])}'] if start_from else [])]
    record_path, log_path = os.path.join(folder, 'run.json'), os.path.join(folder, 'train.log')
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f'note: load average {load:.1f} on {os.cpu_count()} cores: other processes are busy, '
              f'so this curve will be slower than on an idle machine', flush=True)
    # A branch's clock starts at its checkpoint's minute (plus the restart, as a user would wait).
    start = time.time() - (start_from['minutes'] * 60 if start_from else 0)
    record = {'name': name, 'minutes': minutes, 'every': every, 'overrides': overrides,
              'command': [shown_path(c) if os.path.isabs(c) else c for c in command],
              'start': start, 'started': datetime.datetime.fromtimestamp(start).isoformat(' ', 'seconds'),
              'load_at_start': round(load, 2), 'machine': machine()}
    if start_from:
        record['from'] = start_from
    atomic.write_json(record_path, record)
    print(f'{name}: training for {minutes:g} min, a checkpoint every {every:g} min and each epoch; '
          f'log in {log_path}', flush=True)

    # Ctrl-C reaches train.py too (same process group); either way it saves before it exits.
    requested = []
    handlers = {sig: signal.signal(sig, lambda signum, _frame: requested.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    used_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    reason, stop_time, seen = None, None, set(checkpoints(backup_dir))
    offset = start_from['minutes'] if start_from else 0.0  # --minutes counts from the branch point
    with open(log_path, 'w') as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        while True:
            try:
                code = process.wait(timeout=POLL)
                break
            except subprocess.TimeoutExpired:
                pass
            for path in checkpoints(backup_dir):
                if path not in seen:
                    seen.add(path)
                    print(f'  {saved_minute(path, start):7.2f} min  {os.path.basename(path)}', flush=True)
            now = time.time()
            if reason is None and (requested or now - start >= (minutes + offset) * 60):
                reason = 'interrupted' if requested else 'budget'
                stop_time = now
                print(f'stopping train.py ({reason}): it finishes its step and saves...', flush=True)
                # SIGTERM, not SIGINT: a budget stop is a normal end (train.py exits 0 on it;
                # SIGINT is the user's Ctrl-C and exits 130).
                process.send_signal(signal.SIGTERM)
            elif reason in ('budget', 'interrupted') and now - stop_time > STOP_GRACE:
                reason = 'killed'
                process.kill()
    end = time.time()
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    used_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (used_after.ru_utime - used_before.ru_utime) + (used_after.ru_stime - used_before.ru_stime)
    began = start + offset * 60
    lines = log_lines(log_path)
    found = checkpoints(backup_dir)
    record.update({
        'end': end, 'wall_minutes': round((end - began) / 60.0, 3),
        'stopped': reason or ('finished' if code == 0 else 'failed'), 'exit_status': code,
        # Average cores busy with train.py: well below the machine's cores means other load.
        'cpu_cores_used': round(cpu_seconds / max(end - began, 1e-9), 2),
        'device': next((line[len('device: '):] for line in lines if line.startswith('device: ')), None),
        'checkpoints': {os.path.basename(p): saved_minute(p, start) for p in found}})
    if start_from:
        record['checkpoints'][start_from['checkpoint']] = start_from['minutes']
    atomic.write_json(record_path, record)
    if reason is None and code not in (0, 130):
        last = next((line for line in reversed(lines) if line.startswith('error: ')), lines[-1] if lines else '')
        raise errors.UserError(f'train.py stopped with exit status {code} ({last}); see {log_path}')
    if not found:
        print(f'note: {name} saved no checkpoint: the budget ended before train.py finished starting '
              f'(or its first save); see {log_path}')
    print(f'{name}: {len(found)} checkpoints in {record["wall_minutes"]:.1f} min ({record["stopped"]}; '
          f'train.py used {record["cpu_cores_used"]:.2f} cores on average); next: '
          f'python experiments/quality.py eval {name}')
    return 130 if reason == 'interrupted' else 0


# --- eval ---

def means(values):
    return {key: float(np.mean(v)) for key, v in values.items()}


def measure(evaluate, outputs, truth, masks, telea_psnr, identity=None, reference=None, real=None):
    """Mean of every metric, plus the share of images whose hole PSNR beats Telea's and, given
    `real` (realism.features of the truth), the realism of the set (glcic/realism.py)."""
    values = evaluate.measure(outputs, truth, masks, identity, reference)
    result = {**means(values), 'beats_telea': float(np.mean(values['hole_psnr'] > telea_psnr))}
    if real is not None:
        from glcic import realism
        result['realism'] = realism.score(realism.features(outputs, masks), real)
    return result


def inherited(record, results_dir, suffix=''):
    """A branch's curve before its branch point: the measured checkpoints of the run it came from
    (suffix '@TAG': as measured on another set)."""
    source = record.get('from')
    if not source:
        return []
    path = os.path.join(results_dir, f'{source["run"]}{suffix}.json')
    if not os.path.exists(path):
        print(f'note: {path} not found, so the curve starts at minute {source["minutes"]:.1f}: '
              f'python experiments/quality.py eval {source["run"]} (with the same --on) first to draw it from 0')
        return []
    earlier = read_json(path, '')['checkpoints']
    return [{**c, 'from_run': source['run']} for c in earlier if c['minutes'] < source['minutes']]


def evaluate_run(name, root, results_dir, limit, prune, other=None, newest=False):
    """Measure every checkpoint of run NAME (newest: only its newest) on its own test split, or on
    other=(tag, npy folder): another set's test split, written as NAME@tag."""
    folder = os.path.join(root, name)
    record = read_json(os.path.join(folder, 'run.json'), f'no run {name} in {root}/ (python '
                       f'experiments/quality.py run {name} --minutes M first)')
    if 'end' not in record:
        print(f'note: {name} has no end time: it is still training (this evaluation slows it down) '
              f'or was killed')
    backup_dir = os.path.join(folder, 'backup')
    found = checkpoints(backup_dir)
    if not found:
        raise errors.UserError(f'no latest-STEP checkpoints in {backup_dir}/: the run saved nothing')
    # TensorFlow only here: prepare, run and report start without it, and run's parent holds no session.
    import tensorflow as tf
    from glcic import backup, blending, evaluate, graphs, realism, replicas
    tf1 = tf.compat.v1

    config.set_values(DEFAULTS)
    saved = backup.read_run_config(backup_dir)
    npy_dir = other[1] if other else saved['NPY_DIR']
    # Each run is scored on its own split and on the holes it trained for; test.py would take config.py's.
    own = [f'--{key}={saved[key]}' for key in ('SEED', 'HOLE_MIN', 'HOLE_MAX') if key in saved]
    backup.apply_run_config([f'--BACKUP_DIR={backup_dir}', f'--BATCH_SIZE={EVAL_BATCH}', f'--NPY_DIR={npy_dir}', *own])
    if other:
        name = f'{name}@{other[0]}'
    images = data.load_images(data.npy_path('test'))
    all_masks, _ = data.test_holes(len(images))  # holes of the whole split, as test.py draws them
    count = len(images) if limit is None else min(limit, len(images))
    truth, masks = np.asarray(images[:count]), all_masks[:count]
    masked = evaluate.hide_holes(truth, masks)  # the methods see only what a user has
    test_set = {'npy': shown_path(data.npy_path('test')), 'images': count, 'of': len(images),
                'hole_seed': [config.SEED, data.STREAMS['test_holes']], 'IMAGE_SIZE': config.IMAGE_SIZE,
                'LOCAL_SIZE': config.LOCAL_SIZE, 'HOLE_MIN': config.HOLE_MIN, 'HOLE_MAX': config.HOLE_MAX}
    settings = {'batch_statistics_batch': STATS_BATCH}
    out_path = os.path.join(results_dir, f'{name}.json')
    old = read_json(out_path, '') if os.path.exists(out_path) else None
    same = old and old['run']['start'] == record['start'] and old['test_set'] == test_set \
        and old['eval'] == settings
    # Checkpoints deleted by --prune, or left out by --newest, keep the numbers measured before.
    if newest:
        found = found[-1:]
    measured = {os.path.basename(p) for p in found}
    entries = [c for c in old['checkpoints'] if c['checkpoint'] not in measured and 'from_run' not in c] if same else []
    entries += inherited(record, results_dir, f'@{other[0]}' if other else '')

    telea = evaluate.telea(masked, masks)
    telea_psnr = evaluate.hole_psnr(telea, truth, masks)
    identity = evaluate.FaceIdentity.load()  # dlib's embeddings: for the networks' fills, not batch stats
    if identity is None:
        print(f'note: no identity numbers: {evaluate.FaceIdentity.INSTALL} adds them')
    faces = (identity, identity.reference(truth)) if identity else (None, None)
    real = realism.features(truth, masks) if count >= realism.MIN_IMAGES else None
    print(f'{name}: {len(found)} checkpoints on {count} images of {test_set["npy"]} '
          f'(holes {config.HOLE_MIN}-{config.HOLE_MAX} px at {config.IMAGE_SIZE}x{config.IMAGE_SIZE})',
          flush=True)
    with tf.Graph().as_default():
        model = graphs.Inference(batch_stats=True)
        saver = tf1.train.Saver(model.variables)
        sess = replicas.make_session()
    try:
        for path in found:
            backup.restore(sess, saver, path)
            phase, epoch, _, step = model.state(sess)
            filled = model.complete(sess, masked, masks)
            stats = np.concatenate([model.complete(sess, masked[i:i + STATS_BATCH], masks[i:i + STATS_BATCH],
                                                   batch_stats=True) for i in range(0, count, STATS_BATCH)])
            key = os.path.basename(path)
            entry = {'checkpoint': key,
                     'minutes': record.get('checkpoints', {}).get(key, saved_minute(path, record['start'])),
                     'phase': phase, 'epoch': epoch, 'step': step,
                     'images_seen': step * saved['BATCH_SIZE'],
                     'moving_averages': measure(evaluate, filled, truth, masks, telea_psnr, *faces, real),
                     'batch_statistics': measure(evaluate, stats, truth, masks, telea_psnr),
                     # The paper's post-processing, as test.py's "+ blending" rows.
                     'blended': measure(evaluate, blending.blend(masked, filled, masks), truth, masks,
                                        telea_psnr, *faces, real)}
            entries.append(entry)
            moving, batch = entry['moving_averages'], entry['batch_statistics']
            print(f'  {entry["minutes"]:7.2f} min  {key:>14}  phase {phase}  hole PSNR {moving["hole_psnr"]:6.2f} dB'
                  f'  hole L1 {moving["hole_l1"]:6.2f}  SSIM {moving["ssim"]:.4f}  sharpness '
                  f'{moving["sharpness"]:.3f}  identity {moving.get("identity", math.nan):.4f}  realism '
                  f'{moving.get("realism", math.nan):.3f}  (batch statistics: '
                  f'{batch["hole_psnr"]:6.2f} dB; blended: {entry["blended"]["hole_psnr"]:6.2f} dB, '
                  f'L1 {entry["blended"]["hole_l1"]:6.2f})', flush=True)
        pixel = data.to_uint8(sess.run(model.mean_pixel))  # the training mean saved with the weights
    finally:
        sess.close()
    baselines = {MEAN_FILL: measure(evaluate, evaluate.mean_fill(masked, masks, pixel), truth, masks, telea_psnr,
                                    *faces, real),
                 TELEA: measure(evaluate, telea, truth, masks, telea_psnr, *faces, real)}
    for method, values in baselines.items():
        print(f'  {method:>31}  hole PSNR {values["hole_psnr"]:6.2f} dB  hole L1 {values["hole_l1"]:6.2f}  '
              f'SSIM {values["ssim"]:.4f}  sharpness {values["sharpness"]:.3f}  identity '
              f'{values.get("identity", math.nan):.4f}  realism {values.get("realism", math.nan):.3f}')
    result = {'name': name, 'run': record, 'test_set': test_set, 'eval': settings,
              'config': {k: v for k, v in saved.items() if not k.endswith('_DIR')},
              'baselines': baselines, 'checkpoints': sorted(entries, key=lambda c: c['minutes'])}
    os.makedirs(results_dir, exist_ok=True)
    atomic.write_json(out_path, result)
    print(f'wrote {out_path}')
    loss_csv = os.path.join(folder, 'output', 'loss.csv')
    if not other and os.path.exists(loss_csv):  # train.py's row per epoch (d_loss...), beside the numbers
        with open(loss_csv, 'rb') as f:
            atomic.write_bytes(os.path.join(results_dir, f'{name}.loss.csv'), f.read())
    if prune:
        older = checkpoints(backup_dir)[:-1]
        removed = [f for p in older for f in glob.glob(f'{p}.*')]
        freed = sum(os.path.getsize(f) for f in removed)
        for f in removed:
            os.remove(f)
        print(f'--prune: deleted {len(older)} checkpoints ({freed / 1e9:.2f} GB); kept {found[-1]}')


# --- report ---

def blended(checkpoint):
    """Hole PSNR / hole L1 after Poisson blending, or a dash for results measured before it was."""
    if 'blended' not in checkpoint:
        return '–'
    return f'{checkpoint["blended"]["hole_psnr"]:.2f} / {checkpoint["blended"]["hole_l1"]:.2f}'


def optional(values, key):
    """A metric that results measured before it existed lack: 3 decimals, or a dash."""
    return f'{values[key]:.3f}' if key in values else '–'


def label(result):
    settings = {k: v for k, v in result['run']['overrides'].items() if k != 'NPY_DIR'}
    return ' '.join(f'{k}={v}' for k, v in settings.items()) or 'config.py defaults'


def measured(results):
    """The CURVES that every baseline and some checkpoint have (older results lack the newer metrics)."""
    return [(key, title) for key, title in CURVES
            if all(key in r['baselines'][TELEA] for r in results)
            and any(key in c['moving_averages'] for r in results for c in r['checkpoints'])]


def draw(results, png):
    baselines = results[0]['baselines']
    curves = measured(results)
    rows = (len(curves) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(13, 4.4 * rows), squeeze=False)
    for ax in axes.flat[len(curves):]:
        ax.axis('off')
    axes = axes.flat[:len(curves)]
    for ax, (key, title) in zip(axes, curves):
        values = [baselines[TELEA][key]]
        for i, result in enumerate(results):
            points = [c for c in result['checkpoints'] if key in c['moving_averages']]
            x = [c['minutes'] for c in points]
            y = [c['moving_averages'][key] for c in points]
            values += y
            ax.plot(x, y, color=f'C{i % 10}', label=result['name'])
            mixed = [(c['minutes'], c['blended'][key]) for c in points if key in c.get('blended', {})]
            if mixed:
                ax.plot(*zip(*mixed), color=f'C{i % 10}', ls='-.', lw=1)
                values += [v for _, v in mixed]
            for phase, marker in PHASE_MARKERS.items():
                inside = [(a, b) for a, b, c in zip(x, y, points) if min(c['phase'], 3) == phase]
                if inside:
                    ax.scatter(*zip(*inside), color=f'C{i % 10}', marker=marker, s=18, zorder=3)
        ax.axhline(baselines[TELEA][key], color='k', ls='--', label=TELEA)
        if key == 'sharpness':
            ax.axhline(1.0, color='g', ls=':', lw=1)  # the ground truth's detail
            values.append(1.0)
        # Mean fill is often far from the rest: stretching the axis to it would flatten the curves.
        low, high, fill = min(values), max(values), baselines[MEAN_FILL][key]
        if max(high, fill) - min(low, fill) <= FILL_STRETCH * (high - low):
            ax.axhline(fill, color='0.5', ls=':')
            low, high = min(low, fill), max(high, fill)
        else:
            ax.text(0.01, 0.01 if fill < low else 0.97, f'{MEAN_FILL}: {fill:.2f} (off the axis)',
                    transform=ax.transAxes, fontsize=7, color='0.4', va='bottom' if fill < low else 'top')
        margin = 0.05 * (high - low or 1.0)
        ax.set_ylim(low - margin, high + margin)
        ax.set_xlim(left=0)
        ax.set_xlabel('minutes of training (wall clock)')
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    key = axes[min(1, len(axes) - 1)]  # the legend goes right of the top row
    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(key.plot([], [], color='0.5', ls=':')[0])
    labels.append(MEAN_FILL)
    if any('blended' in c for r in results for c in r['checkpoints']):
        handles.append(key.plot([], [], color='0.3', ls='-.', lw=1)[0])
        labels.append('+ Poisson blending')
    for phase, marker in PHASE_MARKERS.items():
        handles.append(key.scatter([], [], color='0.3', marker=marker, s=18))
        labels.append(f'phase {phase}')
    key.legend(handles, labels, fontsize=7, loc='upper left', bbox_to_anchor=(1.02, 1.0))
    test_set, run = results[0]['test_set'], results[0]['run']
    fig.suptitle(f'{test_set["images"]} held-out images, one {test_set["HOLE_MIN"]}-{test_set["HOLE_MAX"]} px '
                 f'hole each, {test_set["IMAGE_SIZE"]}x{test_set["IMAGE_SIZE"]}; {run["machine"]["cpu"]}, '
                 f'{run["machine"]["cores"]} cores', fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    plots.save_figure(fig, png, dpi=100)


def shown_digits(key):
    """Decimals a metric is tabulated with: dB and gray levels 2, ratios and distances 3."""
    return 2 if key in ('hole_psnr', 'hole_l1') else 3


def nearest(result, minute):
    """The checkpoint of a run closest to minute, if within NEAR_MINUTES; else None."""
    c = min(result['checkpoints'], key=lambda c: abs(c['minutes'] - minute))
    return c if abs(c['minutes'] - minute) <= NEAR_MINUTES else None


def tables(results):
    """Markdown: the last checkpoint of every run against the baselines, then phase 1 vs phase 3."""
    telea = results[0]['baselines'][TELEA]
    test_set, machine_info = results[0]['test_set'], results[0]['run']['machine']
    lines = [f'{test_set["images"]} held-out images of `{test_set["npy"]}` (of {test_set["of"]}), one '
             f'{test_set["HOLE_MIN"]}-{test_set["HOLE_MAX"]} px hole each at {test_set["IMAGE_SIZE"]}x'
             f'{test_set["IMAGE_SIZE"]}, holes of test.py (seed {test_set["hole_seed"]}). Machine: '
             f'{machine_info["cpu"]}, {machine_info["cores"]} cores, TensorFlow {machine_info["tensorflow"]}.',
             '']
    differ = [r['name'] for r in results if r['test_set'] != test_set]
    if differ:
        lines += [f'**Warning:** {", ".join(differ)} measured other images or holes than '
                  f'{results[0]["name"]}; their numbers do not compare.', '']
    lines += ['| run | settings | last checkpoint (min, phase) | images seen | hole PSNR (dB) | vs Telea | '
              'hole L1 | vs Telea | SSIM | best hole PSNR (dB, min) | hole PSNR, batch stats | '
              'images better than Telea | + blending: hole PSNR / L1 | sharpness | identity | realism | CPU cores used |',
              '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    closest = None
    for r in results:
        last = r['checkpoints'][-1]
        best = max(r['checkpoints'], key=lambda c: c['moving_averages']['hole_psnr'])
        m = last['moving_averages']
        gain, drop = m['hole_psnr'] - telea['hole_psnr'], m['hole_l1'] - telea['hole_l1']
        if closest is None or gain > closest[1]:
            closest = (r['name'], gain, drop, last['minutes'])
        lines.append(f'| {r["name"]} | {label(r)} | {last["minutes"]:.1f}, {min(last["phase"], 3)} | '
                     f'{last["images_seen"]:,} | {m["hole_psnr"]:.2f} | {gain:+.2f} | {m["hole_l1"]:.2f} | '
                     f'{drop:+.2f} | {m["ssim"]:.4f} | {best["moving_averages"]["hole_psnr"]:.2f} '
                     f'({best["minutes"]:.1f}) | {last["batch_statistics"]["hole_psnr"]:.2f} | '
                     f'{100 * m["beats_telea"]:.0f} % | {blended(last)} | {optional(m, "sharpness")} | '
                     f'{optional(m, "identity")} | {optional(m, "realism")} | {r["run"].get("cpu_cores_used", "?")} |')
    for method, values in results[0]['baselines'].items():
        lines.append(f'| {method} | | | | {values["hole_psnr"]:.2f} | | {values["hole_l1"]:.2f} | | '
                     f'{values["ssim"]:.4f} | | | | | {optional(values, "sharpness")} | '
                     f'{optional(values, "identity")} | {optional(values, "realism")} | |')
    def beats(values):
        return values is not None and values['hole_psnr'] > telea['hole_psnr'] and values['hole_l1'] < telea['hole_l1']

    met = [r['name'] for r in results if beats(r['checkpoints'][-1]['moving_averages'])]
    met_blended = [r['name'] for r in results if beats(r['checkpoints'][-1].get('blended'))]
    lines.append('')
    if met:
        lines.append(f'Goal (last checkpoint better than Telea on hole PSNR and hole L1): met by {", ".join(met)}.')
    else:
        name, gain, drop, minute = closest
        lines.append(f'Goal (last checkpoint better than Telea on hole PSNR and hole L1): not met. Closest: '
                     f'{name} at {minute:.1f} min, {gain:+.2f} dB hole PSNR and {drop:+.2f} hole L1 against Telea.')
    lines.append(f'With the paper\'s Poisson blending after the network: met by {", ".join(met_blended)}.'
                 if met_blended else 'With the paper\'s Poisson blending after the network: not met.')
    lines += ['', 'hole PSNR, hole L1 (0-255) and SSIM as in test.py, means over the images, completion with '
              'the moving-average batch norm; "vs Telea" is the difference to OpenCV Telea; "batch stats" '
              f'normalises each batch of {STATS_BATCH} test images with its own statistics; "images better '
              'than Telea" counts higher hole PSNR; sharpness is the detail in the hole over the ground '
              'truth\'s (1 = as detailed), identity the distance of dlib face-recognition embeddings to the '
              'ground truth\'s (see test.py\'s legend), realism the accuracy of a fixed critic telling the '
              'fills from real holes (0.5 best; docs/results.md); "CPU cores used" is train.py\'s CPU time over its wall '
              'time (below the machine\'s cores: other load, or too little work to spread).']

    phases = []
    for r in results:
        ends = [c for c in r['checkpoints'] if c['phase'] == 1]
        adversarial = [c for c in r['checkpoints'] if c['phase'] >= 3]
        if ends and adversarial:
            phases.append((r['name'], ends[-1], adversarial))
    if phases:
        lines += ['', '| run | end of phase 1 (min) | hole PSNR (dB) | hole L1 | last of phase 3 (min) | '
                  'hole PSNR (dB) | hole L1 | change in hole PSNR (dB) | phase 3, all checkpoints: hole PSNR '
                  'range (mean) |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
        for name, end, adversarial in phases:
            last = adversarial[-1]
            a, b = end['moving_averages'], last['moving_averages']
            spread = [c['moving_averages']['hole_psnr'] for c in adversarial]
            lines.append(f'| {name} | {end["minutes"]:.1f} | {a["hole_psnr"]:.2f} | {a["hole_l1"]:.2f} | '
                         f'{last["minutes"]:.1f} | {b["hole_psnr"]:.2f} | {b["hole_l1"]:.2f} | '
                         f'{b["hole_psnr"] - a["hole_psnr"]:+.2f} | {min(spread):.2f}-{max(spread):.2f} '
                         f'({np.mean(spread):.2f}) |')
        lines += ['', 'The goal allows at most 0.5 dB less hole PSNR after the adversarial phase.']
    pairs = [(a, b) for a in results for b in results
             if any(c['phase'] >= 3 for c in a['checkpoints']) and all(c['phase'] == 1 for c in b['checkpoints'])]
    if pairs:
        lines += ['', 'At about equal minutes (each phase-3 checkpoint against the nearest checkpoint of the '
                  f'phase-1-only run, if within {NEAR_MINUTES:g} minutes):', '',
                  '| with phase 3 | min | hole PSNR (dB) | hole L1 | phase 1 only | min | hole PSNR (dB) | '
                  'hole L1 | difference in hole PSNR (dB) |', '|---|---:|---:|---:|---|---:|---:|---:|---:|']
        for a, b in pairs:
            for x in (c for c in a['checkpoints'] if c['phase'] >= 3):
                y = nearest(b, x['minutes'])
                if y is None:
                    continue
                p, q = x['moving_averages'], y['moving_averages']
                lines.append(f'| {a["name"]} | {x["minutes"]:.1f} | {p["hole_psnr"]:.2f} | {p["hole_l1"]:.2f} | '
                             f'{b["name"]} | {y["minutes"]:.1f} | {q["hole_psnr"]:.2f} | {q["hole_l1"]:.2f} | '
                             f'{p["hole_psnr"] - q["hole_psnr"]:+.2f} |')
    return '\n'.join(lines) + '\n'


def against(results, name, tail_minutes=TAIL_MINUTES):
    """Markdown: every run at the checkpoint minutes of run NAME, with the difference to NAME."""
    reference = next((r for r in results if r['name'] == name), None)
    if reference is None:
        raise errors.UserError(f'--against {name}: not among the runs of this report ({", ".join(r["name"] for r in results)})')
    others = [r for r in results if r is not reference]
    # Only the minutes some other run reaches; the reference's own tail says nothing about the others.
    columns = [c for c in reference['checkpoints'] if any(nearest(r, c['minutes']) for r in others)]
    lines = []
    for key, title in measured(results):
        lines += ['', f'{title.split(",")[0]} at about equal minutes (nearest checkpoint within '
                  f'{NEAR_MINUTES:g} minutes; in brackets the difference to {name}):', '',
                  '| run | settings | ' + ' | '.join(f'{c["minutes"]:.1f} min' for c in columns) + ' |',
                  '|---|---|' + '---:|' * len(columns)]
        digits = shown_digits(key)
        lines.append(f'| {name} | {label(reference)} | '
                     + ' | '.join(f'{c["moving_averages"].get(key, math.nan):.{digits}f}' for c in columns) + ' |')
        for r in others:
            cells = []
            for ref in columns:
                c = nearest(r, ref['minutes'])
                if c is None or key not in c['moving_averages']:
                    cells.append('')
                else:
                    value = c['moving_averages'][key]
                    change = value - ref['moving_averages'].get(key, math.nan)
                    cells.append(f'{value:.{digits}f} ({change:+.{digits}f})')
            lines.append(f'| {r["name"]} | {label(r)} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n' + tail(results, reference, tail_minutes)


def tail(results, reference, minutes):
    """Markdown: each run's means over its checkpoints in the reference's last `minutes`, against the
    reference's: one checkpoint's hole PSNR moves by a few tenths of a dB from save to save."""
    end = reference['checkpoints'][-1]['minutes']
    keys = measured(results)

    def means_of(r):
        chosen = [c['moving_averages'] for c in r['checkpoints']
                  if end - minutes - 1e-6 <= c['minutes'] <= end + NEAR_MINUTES
                  and all(key in c['moving_averages'] for key, _ in keys)]
        return len(chosen), {key: np.mean([m[key] for m in chosen]) for key, _ in keys} if chosen else None

    _, base = means_of(reference)
    if base is None:
        return ''
    lines = ['', f'Means over the checkpoints from minute {end - minutes:.1f} to {end:.1f} (in brackets the '
             f'difference to {reference["name"]}):', '',
             '| run | checkpoints | ' + ' | '.join(title.split(',')[0] for _, title in keys) + ' |',
             '|---|---:|' + '---:|' * len(keys)]
    for r in [reference] + [r for r in results if r is not reference]:
        count, values = means_of(r)
        if values is None:
            continue
        cells = []
        for key, _ in keys:
            digits = shown_digits(key)
            change = '' if r is reference else f' ({values[key] - base[key]:+.{digits}f})'
            cells.append(f'{values[key]:.{digits}f}{change}')
        lines.append(f'| {r["name"]} | {count} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def report(names, results_dir, png, reference=None, tail_minutes=TAIL_MINUTES):
    paths = ([os.path.join(results_dir, f'{n}.json') for n in names] if names
             else sorted(glob.glob(os.path.join(results_dir, '*.json'))))
    if not paths:
        raise errors.UserError(f'no results in {results_dir}/: run python experiments/quality.py eval NAME first')
    results = [read_json(p, 'run python experiments/quality.py eval NAME first') for p in paths]
    text = tables(results) + (against(results, reference, tail_minutes) if reference else '')
    draw(results, png)
    # The tables are named after the picture, so two reports (say quality.png, settings.png) can coexist.
    out = os.path.join(results_dir, f'{os.path.splitext(os.path.basename(png))[0]}.md')
    atomic.write_text(out, text)
    print(f'{text}\nwrote {png} and {out}')


# --- command line ---

def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].replace('\n', ' '),
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1], allow_abbrev=False)
    folders = argparse.ArgumentParser(add_help=False)
    folders.add_argument('--root', default=RUNS_DIR,
                         help=f'runs and prepared arrays (default {shown_path(RUNS_DIR)})')
    folders.add_argument('--results', default=RESULTS_DIR,
                         help=f'NAME.json and quality.md (default {shown_path(RESULTS_DIR)})')
    commands = parser.add_subparsers(dest='command', required=True)

    def command(name, text):
        return commands.add_parser(name, help=text, description=text, parents=[folders], allow_abbrev=False)

    command('prepare', 'to_npy.py into ROOT/npy (any to_npy.py arguments)')
    one = command('run', 'train one setting for a wall-clock budget (any --KEY=value of config.py)')
    one.add_argument('name')
    one.add_argument('--minutes', type=float, required=True, help='wall-clock budget')
    one.add_argument('--every', type=float, default=EVERY_MINUTES,
                     help=f'minutes between checkpoints (default {EVERY_MINUTES:g})')
    one.add_argument('--from', dest='source', metavar='RUN[:CHECKPOINT]',
                     help='start from a checkpoint of an earlier run (default its newest), not from scratch')
    measure_runs = command('eval', 'measure every checkpoint of runs on the held-out test split')
    measure_runs.add_argument('names', nargs='+', metavar='NAME')
    measure_runs.add_argument('--images', type=int, metavar='N',
                              help='only the first N test images (same holes as test.py); default all')
    measure_runs.add_argument('--newest', action='store_true',
                              help='only the newest checkpoint of each run (the others keep their earlier numbers)')
    measure_runs.add_argument('--prune', action='store_true',
                              help='then delete all but the newest checkpoint of each run')
    measure_runs.add_argument('--on', metavar='TAG=FOLDER',
                              help="measure on another set's test split (FOLDER/x_test.npy) instead; "
                                   'the results are written as NAME@TAG')
    draw_runs = command('report', 'curves and tables of the evaluated runs')
    draw_runs.add_argument('names', nargs='*', metavar='NAME', help='default: every json in RESULTS')
    draw_runs.add_argument('--png', default=PNG_PATH,
                           help=f'the curves (default {shown_path(PNG_PATH)}); the tables go to RESULTS/<its name>.md')
    draw_runs.add_argument('--against', metavar='NAME',
                           help='also tabulate every run at the checkpoint minutes of run NAME, with the differences, '
                                'and their means over the last --tail minutes of NAME')
    draw_runs.add_argument('--tail', type=float, default=TAIL_MINUTES, metavar='MINUTES',
                           help=f'with --against: the last minutes averaged (default {TAIL_MINUTES:g})')
    args, rest = parser.parse_known_args(argv)
    root, results_dir = os.path.abspath(args.root), os.path.abspath(args.results)
    if args.command == 'prepare':
        return prepare(root, rest)
    if args.command == 'run':
        return run(args.name, args.minutes, args.every, root, rest, args.source)
    if rest:
        parser.error(f'unrecognized arguments: {" ".join(rest)}')
    if args.command == 'eval':
        if args.images is not None and args.images < 1:
            raise errors.UserError(f'--images {args.images}: need at least 1')
        other = None
        if args.on:
            tag, _, npy = args.on.partition('=')
            if not re.fullmatch(r'[A-Za-z0-9][\w.-]*', tag) or not npy:
                raise errors.UserError(f'--on {args.on}: expected TAG=FOLDER, e.g. --on celeba=experiments/runs/celeba/npy')
            other = (tag, os.path.abspath(npy))
        for name in args.names:
            evaluate_run(name, root, results_dir, args.images, args.prune, other, args.newest)
        return 0
    if args.tail < 0:
        raise errors.UserError(f'--tail {args.tail:g}: need 0 or more minutes')
    report(args.names, results_dir, os.path.abspath(args.png), args.against, args.tail)
    return 0


if __name__ == '__main__':
    cli.run(main)
