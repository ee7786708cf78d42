"""Example models, trained here on generated data.

Training shares the machine with whatever else runs; GNU OpenMP's default
spinning waits then slow a two-thread step by an order of magnitude, so the
examples wait passively (set before any example imports torch).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
