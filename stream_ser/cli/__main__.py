"""``python -m stream_ser.cli``: the ``stream-ser`` command, as ``python -m stream_ser``."""

import sys

from . import main

sys.exit(main())
