"""``python -m stream_ser``: the ``stream-ser`` command (:func:`stream_ser.cli.main`)."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while Python loads the command: as the command's own Ctrl-C
    print("stream-ser: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
