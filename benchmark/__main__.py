"""``python -m ood_bench`` = the ``ood-bench`` command."""
import sys

from ood_bench.cli import main

sys.exit(main())
