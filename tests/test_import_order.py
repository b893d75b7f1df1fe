"""glcic.cli loads before TensorFlow in every script: it sets TF_ENABLE_ONEDNN_OPTS (train.py's
oneDNN on x86) and the quiet log level, which TensorFlow reads once, when it is imported."""
import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPTS = ['train.py', 'test.py', 'to_npy.py', 'export.py', 'app.py', 'experiments/bench.py',
           'experiments/quality.py', 'experiments/one_face.py', 'experiments/ship_model.py', 'docs/faces_grid.py']
# Imports the script as a module (its main() does not run) and prints the modules in the order
# their import began.
PROBE = r'''
import importlib.util, sys
order = []
class Record:
    def find_spec(self, name, path=None, target=None):
        order.append(name)
        return None
sys.meta_path.insert(0, Record())
path = sys.argv[1]
sys.argv = [path]
sys.path.insert(0, '.')
spec = importlib.util.spec_from_file_location('probed', path)
spec.loader.exec_module(importlib.util.module_from_spec(spec))
print('\n'.join(order))
'''


@pytest.mark.parametrize('script', SCRIPTS)
def test_glcic_cli_is_imported_before_tensorflow(script):
    result = subprocess.run([sys.executable, '-c', PROBE, script], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    order = result.stdout.split()
    assert 'glcic.cli' in order
    if 'tensorflow' in order:  # to_npy.py and quality.py's parent process never load it
        assert order.index('glcic.cli') < order.index('tensorflow'), \
            f'{script} imports tensorflow before glcic.cli: put `from glcic import cli` first'


def test_the_probe_sees_a_script_that_imports_tensorflow_first(tmp_path):
    wrong = tmp_path / 'wrong.py'
    wrong.write_text('import tensorflow\nfrom glcic import cli\n')
    result = subprocess.run([sys.executable, '-c', PROBE, str(wrong)], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    order = result.stdout.split()
    assert order.index('tensorflow') < order.index('glcic.cli')
