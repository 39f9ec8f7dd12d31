"""`python run.py ...` is `memwall ...` (memwall/cli.py), from a checkout."""
import sys

from memwall.cli import main

if __name__ == "__main__":  # a sweep's spawned workers import this file as __mp_main__
    sys.exit(main())
