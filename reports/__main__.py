"""`python -m unlock_eval.reports RESULTS...`: the same as `unlock-eval report`."""

import sys

from .cli import main

sys.exit(main())
