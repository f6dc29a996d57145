"""``python -m rnnc`` runs the CLI."""

import sys

from rnnc.cli import main

sys.exit(main())
