"""Thread defaults that survive a busy machine.

Torch's CPU kernels run on OpenMP threads, which by default spin for a while after each parallel
region. When other processes compete for the cores (several jobs on a 2-core machine), spinning
threads steal the time the working ones need, and a training step can get tens of times slower
(``benchmarks/threads.py`` measures it). Waiting passively costs little when the machine is idle.

OpenMP reads ``OMP_WAIT_POLICY`` once, when torch loads: ``import worldflux`` sets it to
``PASSIVE`` unless it is already set, which works when worldflux is imported before torch (the
``worldflux`` command always is). Set ``OMP_WAIT_POLICY=ACTIVE`` in the environment to keep
OpenMP's spinning, or set the variable yourself before importing torch first.
"""

from __future__ import annotations

import os
import sys


def passive_openmp_default() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless it is set; True when it takes effect (torch not yet
    loaded and the variable was not set by the user)."""
    if "OMP_WAIT_POLICY" in os.environ:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return "torch" not in sys.modules


passive_openmp_default()
