"""`python -m reports [--out docs/RESULTS.md] [--data FOLDER] [--seeds 5] [--no-ablation]`."""

import sys

from reports.main import main

sys.exit(main())
