"""Install, help, logs, the run lock and Poisson blending at the image border.

The requirements files install TensorFlow 2.21 on every system the README names, --help lists
every setting of config.py, TensorFlow's load-time notices stay hidden, the lock needs no
fcntl, and blending is as good at the border and around L-shaped holes as in the middle.
"""
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from packaging.requirements import Requirement

from glcic import backup, blending
from glcic import cli
import config
from glcic import evaluate, synthetic
from conftest import ROOT

# The systems README.md names, as pip's environment markers see them.
SYSTEMS = {
    'Linux x86_64': {'sys_platform': 'linux', 'platform_machine': 'x86_64'},
    'Linux arm64': {'sys_platform': 'linux', 'platform_machine': 'aarch64'},
    'Windows x86_64': {'sys_platform': 'win32', 'platform_machine': 'AMD64'},
    'macOS arm64': {'sys_platform': 'darwin', 'platform_machine': 'arm64'},
}
TENSORFLOW = {'tensorflow', 'tensorflow-cpu'}


def requirement_lines(name):
    """The Requirements of a requirements file, its `-r FILE` includes read in place."""
    with open(os.path.join(ROOT, name)) as f:
        lines = [raw.split('#')[0].strip() for raw in f]
    found = []
    for line in filter(None, lines):
        found += requirement_lines(line[3:].strip()) if line.startswith('-r ') else [Requirement(line)]
    return found


def requirements(name):
    """{system: {package: Requirement}} of a requirements file, as pip would read it there."""
    lines = requirement_lines(name)
    out = {}
    for system, markers in SYSTEMS.items():
        env = {**markers, 'python_version': '3.11', 'extra': ''}
        out[system] = {r.name: r for r in lines if r.marker is None or r.marker.evaluate(env)}
    return out


# --- install ---

@pytest.mark.parametrize('name, gpu_build', [('requirements.txt', 'tensorflow'),
                                             ('requirements-cpu.txt', 'tensorflow-cpu'),
                                             ('requirements-dev.txt', 'tensorflow')])
def test_each_requirements_file_installs_tensorflow_2_21_everywhere(name, gpu_build):
    """One TensorFlow 2.21 per system, the same other packages in every file."""
    main = requirements('requirements.txt')
    for system, packages in requirements(name).items():
        tf = [packages[p] for p in TENSORFLOW & set(packages)]
        assert len(tf) == 1, (name, system, tf)
        assert str(tf[0].specifier) == '==2.21.*', (name, system, tf[0])
        if system == 'Linux x86_64':
            assert tf[0].name == gpu_build, (name, tf[0])
        optional = {r.name for f in ('requirements-app.txt', 'requirements-eval.txt')
                    for r in requirement_lines(f)} | {'pytest', 'pytest-xdist', 'selenium'}  # the tests' extras
        others = {n: str(r) for n, r in packages.items() if n not in TENSORFLOW | optional}
        assert others == {n: str(r) for n, r in main[system].items() if n not in TENSORFLOW}, name
        assert {'numpy', 'opencv-python-headless', 'tqdm', 'matplotlib', 'tensorboard',
                'filelock'} <= set(others), (name, system)
    assert requirements('requirements.txt')['Linux x86_64']['tensorflow'].extras == {'and-cuda'}
    assert 'pytest' in requirements('requirements-dev.txt')['Linux x86_64']


def test_readme_and_ci_install_what_the_tests_need():
    """README's two set-up commands, one for the program, one for the tests; CI runs both tiers."""
    with open(os.path.join(ROOT, 'README.md')) as f:
        readme = f.read()
    with open(os.path.join(ROOT, '.ci', 'run')) as f:
        ci = f.read()
    assert 'pip install -r requirements.txt' in readme
    assert 'pip install -r requirements-dev.txt\n    python -m pytest -q tests' in readme
    assert '-r requirements-dev.txt' in ci and 'python -m pytest -q tests' in ci
    assert '    python -m pytest -q -m slow tests' in readme and 'python -m pytest -q -m slow tests' in ci


# --- --help and TensorFlow's notices ---

def setting_lines():
    """(key, default as written, comment) of every setting in config.py."""
    with open(os.path.join(ROOT, 'config.py')) as f:
        found = [re.fullmatch(r'([A-Z][A-Z0-9_]*) = (.+?)  # (.+)', line) for line in f.read().splitlines()]
    return [m.groups() for m in found if m and m[1] in config.keys()]


@pytest.mark.parametrize('script', ['train.py', 'test.py'])
def test_help_lists_every_setting_and_no_load_notice(script):
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), '--help'], cwd=ROOT,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ''  # no "oneDNN custom operations are on", once or twice
    flat = ' '.join(result.stdout.split())
    settings = setting_lines()
    assert {key for key, _, _ in settings} == set(config.keys())
    for key, default, comment in settings:
        assert f'--{key}={default} {" ".join(comment.split())}' in flat, key
    assert "'cpu' sets BATCH_SIZE=8 PRETRAIN_EPOCH=5 D_EPOCH=1" in flat
    assert ('--fresh' in flat) == (script == 'train.py') and ('--blend' in flat) == (script == 'test.py')


def test_load_notices_follow_the_log_level(monkeypatch):
    notice = 'I0000 00:00:1795650692.350817    7123 port.cc:153] oneDNN custom operations are on.\n'
    error = 'E0000 00:00:1795650692.350817    7123 cuda_dnn.cc:8579] Unable to register cuDNN factory\n'
    absl = 'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n'
    for level, shown in (('0', [notice, error, absl]), ('1', [error, absl]), ('2', [error]), ('3', [])):
        monkeypatch.setenv('TF_CPP_MIN_LOG_LEVEL', level)
        assert [line for line in (notice, error, absl) if not cli.hidden(line)] == shown, level
    assert not cli.hidden('Traceback (most recent call last):\n')


# --- the run lock ---

def test_scripts_import_without_fcntl():
    """Windows has no fcntl: train.py and test.py must still import."""
    code = "import sys; sys.modules['fcntl'] = None; from glcic import cli, backup; import train, test"
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr


def test_second_lock_is_refused_with_the_holders_pid(tiny_config, tmp_path):
    tiny_config.set_values({'BACKUP_DIR': str(tmp_path / 'backup')})
    held = backup.lock()
    with pytest.raises(cli.UserError, match=rf'another train.py \(pid {os.getpid()}\) is using'):
        backup.lock()
    held.close()  # what the OS does when the holder ends
    backup.lock().close()


# --- Poisson blending at the border ---

def ramp(size=64):
    """A smooth image: every channel a plane of a different slope."""
    yy, xx = np.mgrid[0:size, 0:size]
    return np.stack([40 + 2 * xx, 60 + 1.5 * yy, 50 + xx + yy], axis=2).astype(np.uint8)[None]


def box_mask(size, *boxes):
    mask = np.zeros((1, size, size, 1), np.float32)
    for y, x, h, w in boxes:
        mask[:, y:y + h, x:x + w] = 1
    return mask


def seam(result, truth, mask):
    """Largest error of a difference between a hole pixel and its known neighbour, 0-255."""
    hole = mask[0, ..., 0] > 0
    result, truth = result[0].astype(int), truth[0].astype(int)
    worst = 0
    for a, b in ((np.s_[:, :-1], np.s_[:, 1:]), (np.s_[:-1], np.s_[1:])):
        across = hole[a] != hole[b]
        error = np.abs((result[a] - result[b]) - (truth[a] - truth[b])).max(axis=2)
        worst = max(worst, error[across].max())
    return worst


PLACES = {'corner': (0, 0), 'edge': (0, 20), 'centre': (20, 20), 'far corner': (40, 40)}


@pytest.mark.parametrize('place', PLACES)
def test_a_perfect_completion_comes_back_wherever_the_hole_is(place):
    truth, mask = ramp(), box_mask(64, (*PLACES[place], 24, 24))
    blended = blending.blend(evaluate.hide_holes(truth, mask), truth, mask)
    assert evaluate.hole_l1(blended, truth, mask)[0] < 0.2
    assert np.abs(blended.astype(int) - truth).max() <= 1  # rounding


@pytest.mark.parametrize('place', PLACES)
def test_a_colour_offset_is_removed_at_the_border_too(place):
    truth, mask = ramp(), box_mask(64, (*PLACES[place], 24, 24))
    completed = np.where(mask > 0, truth.astype(int) + 30, truth).astype(np.uint8)
    blended = blending.blend(evaluate.hide_holes(truth, mask), completed, mask)
    assert np.abs(blended.astype(int) - truth).max() <= 1


@pytest.mark.parametrize('boxes', [((16, 16, 32, 12), (36, 16, 12, 32)),   # L inside
                                   ((0, 0, 32, 12), (20, 0, 12, 32)),      # L in the corner
                                   ((10, 30, 12, 34), (10, 30, 40, 12)),   # L on the right edge
                                   tuple((20 + i, 10 + 2 * i, 2, 4) for i in range(20))])  # stroke
def test_l_shaped_holes_leave_no_seam_at_their_inner_corner(boxes):
    truth, mask = ramp(), box_mask(64, *boxes)
    blended = blending.blend(evaluate.hide_holes(truth, mask), truth, mask)
    assert seam(blended, truth, mask) <= 1
    assert evaluate.hole_l1(blended, truth, mask)[0] < 0.2


@pytest.mark.parametrize('n', [1, 2, 5, 40])
def test_the_box_solve_uses_true_eigenvectors(n):
    """Each end closed (a known pixel beyond it) or open (the image border)."""
    for open_start in (False, True):
        for open_end in (False, True):
            matrix = 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
            matrix[0, 0] -= open_start
            matrix[-1, -1] -= open_end
            values, vectors = blending._second_difference(n, open_start, open_end)
            assert np.allclose(matrix @ vectors, vectors * values)
            assert np.allclose(vectors.T @ vectors, np.eye(n))


def test_a_large_hole_is_solved_in_seconds():
    """A 300 px square hole in a 1000 px photo: the box's own solve, not thousands of CG steps."""
    yy, xx = np.mgrid[0:1000, 0:1000]
    truth = np.stack([40 + xx * 0.15, 60 + yy * 0.1, 50 + (xx + yy) * 0.05], axis=2).astype(np.uint8)[None]
    mask = box_mask(1000, (300, 400, 300, 300))
    completed = np.where(mask > 0, truth.astype(int) + 20, truth).astype(np.uint8)
    start = time.time()
    blended = blending.blend(evaluate.hide_holes(truth, mask), completed, mask)
    assert time.time() - start < 20  # about 1 s on 2 busy cores; plain CG took a minute
    assert np.abs(blended.astype(int) - truth).max() <= 1


def test_border_holes_blend_as_well_as_inner_ones_on_faces():
    """Faces have edges, so a perfect completion does not come back exactly; but it comes back
    as close at the border as in the middle, and far closer than OpenCV's Telea fill."""
    truth = synthetic.faces(16, 64)
    errors = {}
    for place, (y, x) in PLACES.items():
        mask = np.repeat(box_mask(64, (y, x, 24, 24)), len(truth), axis=0)
        masked = evaluate.hide_holes(truth, mask)
        errors[place] = evaluate.hole_l1(blending.blend(masked, truth, mask), truth, mask).mean()
        assert errors[place] < evaluate.hole_l1(evaluate.telea(masked, mask), truth, mask).mean() / 3
    assert max(errors['corner'], errors['edge'], errors['far corner']) <= errors['centre'] + 0.5, errors
