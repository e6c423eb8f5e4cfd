"""`make report`: run the report stage alone (see comfywatchman.stages.report). Flags as for `comfywatchman`."""

import sys

from comfywatchman.cli import main

if __name__ == "__main__":
    sys.exit(main(["--stage", "report", *sys.argv[1:]]))
