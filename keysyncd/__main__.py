"""Allow ``python -m keysyncd``."""

import sys

from keysyncd.commands.cli import main

sys.exit(main())
