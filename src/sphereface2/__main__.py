"""``python -m sphereface2 ...`` (and ``torchrun ... -m sphereface2 train ...``) = the CLI."""

import sys

from sphereface2.cli import main

if __name__ == "__main__":
    sys.exit(main())
