"""`python -m bench.e2e`: see bench/e2e/__init__.py."""

import sys

from bench.e2e.runner import main

sys.exit(main())
