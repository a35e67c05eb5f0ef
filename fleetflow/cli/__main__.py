"""``python -m fleetflow.cli``: the same as the ``fleetflow`` command."""

import sys

from fleetflow.cli import main

sys.exit(main())
