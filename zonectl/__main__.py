"""``python -m zonectl`` runs the ``zonectl`` command (handy where the console script is not on PATH)."""

import sys

from .cli import main

sys.exit(main())
