#!/usr/bin/env python3
"""BIDS App entry point: the same command as the ``csvd-bids`` console script."""

import sys

from csvd_bids.cli.run import main

if __name__ == "__main__":
    sys.exit(main())
