"""Allow ``python -m keysyncd``."""

import sys

from keysyncd.cli import main

sys.exit(main())
