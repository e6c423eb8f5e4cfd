"""Allow ``python -m comfywatchman``."""

import sys

from comfywatchman.cli import main

sys.exit(main())
