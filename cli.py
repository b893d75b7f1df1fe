"""What every script shares: quiet TensorFlow logs and one-line errors for user mistakes."""
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # hide TensorFlow's C++ info lines

import config  # noqa: E402
from errors import UserError  # noqa: E402


def run(main):
    """Call main(argv) and turn user mistakes into one line on stderr and exit status 2."""
    try:
        status = main(sys.argv[1:])
    except (UserError, config.ConfigError) as error:
        print(f'error: {error}', file=sys.stderr)
        status = 2
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        status = 130
    sys.exit(status or 0)
