"""`make verify`: run the verify stage alone (see comfywatchman.stages.verify). Flags as for `comfywatchman`."""

import sys

from comfywatchman.cli import main

if __name__ == "__main__":
    sys.exit(main(["--stage", "verify", *sys.argv[1:]]))
