"""What every script shares: quiet TensorFlow logs and one-line errors for user mistakes."""
import importlib.abc
import importlib.util
import os
import platform
import re
import signal
import sys
import tempfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # hide TensorFlow's C++ info lines

# Training differentiates dilated convolutions. On x86, TensorFlow turns oneDNN on by default only
# on CPUs with AVX-512-class features; without it the CPU has no native gradient for them and
# layer.dilated_conv falls back to its custom gradient, and the whole step to TensorFlow's slower
# kernels (0.6x oneDNN's speed, BENCHMARKS.md).
# Inference keeps TensorFlow's default: oneDNN made one photo slower there (BENCHMARKS.md).
ONEDNN_SCRIPTS = ('train.py', 'bench.py')
if (os.path.basename(sys.argv[0] if sys.argv else '') in ONEDNN_SCRIPTS
        and platform.machine().lower() in ('x86_64', 'amd64')):
    os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')  # unless the user chose

SCRIPT = os.path.basename(sys.argv[0] if sys.argv else '')
SCRIPTS = ('train.py', 'test.py', 'to_npy.py', 'export.py', 'app.py', 'bench.py')


def interrupted_while_loading(kind, value, traceback, previous=sys.excepthook):
    """Ctrl-C before run() takes over (TensorFlow takes seconds to import): one line, not the
    import's traceback. Python then exits as killed by SIGINT (130 in a shell)."""
    if issubclass(kind, KeyboardInterrupt):
        print(f'interrupted while {SCRIPT} was starting; nothing was changed', file=sys.stderr)
    else:
        previous(kind, value, traceback)


sys.excepthook = interrupted_while_loading
if SCRIPT in SCRIPTS:
    # A shell without job control starts `cmd &` with SIGINT ignored, and Python then has no
    # KeyboardInterrupt: Ctrl-C (or kill -INT) must stop every script, while it loads too.
    signal.signal(signal.SIGINT, signal.default_int_handler)

from glcic import settings  # noqa: E402
from glcic.errors import UserError  # noqa: E402
try:
    import config  # noqa: E402
except Exception as error:  # a mistake in config.py: one line before anything else loads
    found = importlib.util.find_spec('config')
    said = found and settings.import_error(error, found.origin)
    if not said:
        raise
    print(f'error: {said}', file=sys.stderr)
    sys.exit(2)

ABSL_NOTICE = 'WARNING: All log messages before absl::InitializeLog() is called'
LOG_LINE = re.compile(r'([IWEF])\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] ')  # I0000 00:00:17.5  42 port.cc:153] ...


class QuietLoad(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports tensorflow with stderr held back, then writes what TF_CPP_MIN_LOG_LEVEL lets through.

    TensorFlow's libraries log while they load, before the level applies: two of them say
    "oneDNN custom operations are on" whatever it is set to.
    """

    def find_spec(self, name, path=None, target=None):
        if name != 'tensorflow':
            return None
        sys.meta_path.remove(self)  # only the first import loads the libraries
        spec = importlib.util.find_spec(name)
        if spec is not None:
            self.loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader  # an ordinary module from here on
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr to hold back (e.g. pythonw on Windows)
            return self.loader.exec_module(module)
        with tempfile.TemporaryFile() as held:
            os.dup2(held.fileno(), 2)
            try:
                self.loader.exec_module(module)
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                held.seek(0)
                lines = held.read().decode(errors='replace').splitlines(keepends=True)
                sys.stderr.write(''.join(line for line in lines if not hidden(line)))
                sys.stderr.flush()


def hidden(line):
    """True for a line of TensorFlow's C++ log below TF_CPP_MIN_LOG_LEVEL (0 info .. 3 fatal only)."""
    level = os.environ.get('TF_CPP_MIN_LOG_LEVEL', '0')
    level = int(level) if level.isdigit() else 0
    match = LOG_LINE.match(line)
    severity = 1 if line.startswith(ABSL_NOTICE) else 'IWEF'.index(match[1]) if match else None
    return severity is not None and severity < level


sys.meta_path.insert(0, QuietLoad())


def run(main):
    """Call main(argv) and turn user mistakes into one line on stderr and exit status 2."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as at import, for a script of another name
    try:
        status = main(sys.argv[1:])
    except (UserError, config.ConfigError) as error:
        print(f'error: {error}', file=sys.stderr)
        status = 2
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        status = 130
    sys.exit(status or 0)
