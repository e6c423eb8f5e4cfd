"""`make cache`: run the cache stage alone (see comfywatchman.stages.cache). Flags as for `comfywatchman`."""

import sys

from comfywatchman.cli import main

if __name__ == "__main__":
    sys.exit(main(["--stage", "cache", *sys.argv[1:]]))
