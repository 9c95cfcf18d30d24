"""python -m modelfs: the modelfs command."""

import sys

from ._cli import main

sys.exit(main())
