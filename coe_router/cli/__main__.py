"""`python -m coe_router.cli ...`: the same as the `coe` script."""

import sys

from coe_router.cli.main import main

sys.exit(main())
