"""`python -m hrnn` is the `hrnn` command."""

import sys

from hrnn.cli import main

sys.exit(main())
