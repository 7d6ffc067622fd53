#!/usr/bin/env python3
"""Benchmarks of edgellm_ext: ``python bench/run.py --help``.

Thin on purpose: the runner, timing, statistics, environment and power records, results and reports live in the
tested package (edgellm_ext.harness and friends). See docs/benchmarks.md.
"""

import sys
from pathlib import Path

from edgellm_ext.harness import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], Path(__file__).resolve().parent))
