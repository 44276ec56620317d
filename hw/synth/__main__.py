"""``python -m hw.synth``: see :mod:`hw.synth.cli`."""

import sys

from .cli import main

sys.exit(main())
