"""`python -m memwall ...` is `memwall ...`."""
import sys

from memwall.cli import main

sys.exit(main())
