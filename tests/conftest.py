import pytest

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
