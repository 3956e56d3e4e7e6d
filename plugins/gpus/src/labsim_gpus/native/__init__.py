"""labsim-gpus's compiled twins: the cost-model modules its
``setup.py`` compiles with mypyc (:mod:`labsim.native`).

>>> from labsim_gpus import native
>>> sorted(native.status())
['decode_pricer']
"""

from __future__ import annotations

from labsim import native as _native

#: modules compiled into twins, by twin name: their path under ``src/labsim_gpus``
#: (setup.py reads the next line)
MODULES = {"decode_pricer": "decode_pricer.py"}


def status() -> dict[str, str]:
    """How each module of :data:`MODULES` runs in this process: ``"compiled"`` or why not."""
    return _native.package_status(__name__.rpartition(".")[0], MODULES)
