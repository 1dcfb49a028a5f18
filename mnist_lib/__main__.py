"""`python -m mnist_lib COMMAND ...`: the command line (`mnist_lib.cli`)."""

import sys

from .cli import main

sys.exit(main())
