"""`make scan`: run the scan stage alone (see comfywatchman.stages.scan). Flags as for `comfywatchman`."""

import sys

from comfywatchman.cli import main

if __name__ == "__main__":
    sys.exit(main(["--stage", "scan", *sys.argv[1:]]))
