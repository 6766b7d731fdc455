"""`python -m orchestrator.cli ...`: the `memlaw` command line."""

import sys

from orchestrator.cli.main import main

sys.exit(main())
