"""`make search`: run the search stage alone (see comfywatchman.stages.search). Flags as for `comfywatchman`."""

import sys

from comfywatchman.cli import main

if __name__ == "__main__":
    sys.exit(main(["--stage", "search", *sys.argv[1:]]))
