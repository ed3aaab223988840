"""``python -m stream_ser.serve ...``: the ``serve`` command on its own (same options)."""

import sys

from .command import main

sys.exit(main())
