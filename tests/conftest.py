import os

import pytest
from hypothesis import settings

# The suite explores the same examples on every run, so a failure CI finds is
# found again by whoever runs the same test; HYPOTHESIS_PROFILE=explore draws
# new examples each run (for a bug hunt), with more of them.  No deadline: a
# slow machine is not a failure (no timed assertions in this suite).
settings.register_profile("guardline", derandomize=True, print_blob=True, deadline=None)
settings.register_profile("explore", derandomize=False, print_blob=True, deadline=None,
                          max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "guardline"))

from tests.mpvm import MicroPythonProcess


@pytest.fixture
def mp_process():
    """Start scripts under the real MicroPython VM; closed after the test."""
    procs = []

    def start(script, heapsize=None):
        p = MicroPythonProcess(script, heapsize=heapsize)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.close()
