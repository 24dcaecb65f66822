"""``python -m jaxrnn.testing MODULE:FORWARD MODULE:BACKWARD [--activation A] [--step]``."""

import sys

from ._cli import main

sys.exit(main())
