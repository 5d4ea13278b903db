"""`python -m fastgw` runs the command-line interface."""

from fastgw.cli import main

raise SystemExit(main())
