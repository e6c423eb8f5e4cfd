"""`make gate`: run the gate stage alone (see comfywatchman.stages.gate). Flags as for `comfywatchman`."""

import sys

from comfywatchman.cli import main

if __name__ == "__main__":
    sys.exit(main(["--stage", "gate", *sys.argv[1:]]))
