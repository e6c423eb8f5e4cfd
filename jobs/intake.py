"""`make intake`: run the intake stage alone (see comfywatchman.stages.intake). Flags as for `comfywatchman`."""

import sys

from comfywatchman.cli import main

if __name__ == "__main__":
    sys.exit(main(["--stage", "intake", *sys.argv[1:]]))
