"""``python -m responsibility.cli``: the same as the ``responsibility`` command."""

import sys

from responsibility.cli.main import main

sys.exit(main())
