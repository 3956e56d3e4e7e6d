"""One thread for numpy's BLAS in a ``labsim`` command's process.

A simulation runs on one core. numpy's OpenBLAS starts a thread per core when numpy is
imported, and each spins for some 90 ms waiting for work a simulation never hands it:
``import numpy`` took 175 ms of CPU on a 2-core machine, 90 ms with ``OPENBLAS_NUM_THREADS=1``
(measured with ``perf stat``), and a 10-request ``labsim run`` spent 12 % of its CPU in that
spinning thread. A sweep's workers, one per core, would take those cores from each other at
every start. So the command line asks numpy's BLAS for one thread before numpy is first
imported, unless the user chose a count; the Python API (``labsim.run``) leaves the
process's settings as they are.

>>> environ = {}                            # the command line passes os.environ
>>> single_threaded_blas(environ)
True
>>> environ
{'OPENBLAS_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
>>> environ = {"OPENBLAS_NUM_THREADS": "4"}   # a count the user chose stays
>>> _ = single_threaded_blas(environ); environ
{'OPENBLAS_NUM_THREADS': '4', 'MKL_NUM_THREADS': '1'}
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

#: the variables that set the thread count of numpy's BLAS builds (OpenBLAS; MKL for Intel's)
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def single_threaded_blas(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set each of :data:`BLAS_THREAD_VARIABLES` the user left unset to ``"1"`` in *environ*
    (default: this process's environment, read by the BLAS library when numpy loads it).
    Returns False, changing nothing, when numpy is imported already in this process (its
    threads are running) and *environ* is the process's."""
    if environ is None:
        if "numpy" in sys.modules:
            return False
        environ = os.environ
    for name in BLAS_THREAD_VARIABLES:
        environ.setdefault(name, "1")
    return True


__all__ = ["BLAS_THREAD_VARIABLES", "single_threaded_blas"]
