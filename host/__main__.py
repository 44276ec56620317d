"""``python -m host <command>``: see :mod:`host.cli`."""

import sys

from .cli import main

sys.exit(main())
