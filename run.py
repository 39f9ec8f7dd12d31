"""`python run.py ...` is `memwall ...` (memwall/cli.py), from a checkout."""
import sys

from memwall.cli import main

sys.exit(main())
