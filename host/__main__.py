"""``python -m systolic.host <command>``: see :mod:`systolic.host.cli`."""

import sys

from .cli import main

sys.exit(main())
