"""``python -m systolic.hw.synth``: see :mod:`systolic.hw.synth.cli`."""

import sys

from .cli import main

sys.exit(main())
