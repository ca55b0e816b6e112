"""`python -m unlock_eval.cli ...`: the same as `unlock-eval ...`."""

import sys

from unlock_eval.cli import main

sys.exit(main())
