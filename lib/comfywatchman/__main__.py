"""Allow ``python -m comfywatchman``."""

import gc
import sys

from comfywatchman.cli import main

code = main()
# The process ends here: the cycle collector need not walk every object once more while the interpreter shuts
# down (a tenth of a warm cycle). Objects are still freed, finalizers and atexit handlers still run.
gc.freeze()
sys.exit(code)
