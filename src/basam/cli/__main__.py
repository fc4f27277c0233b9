"""`python -m basam.cli`: the same as the `basam` command (torchrun starts it this way)."""

import sys

from basam.cli import main

sys.exit(main())
