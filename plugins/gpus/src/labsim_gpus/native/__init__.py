"""labsim-gpus's compiled twins: the cost-model modules its
``setup.py`` compiles with mypyc (:mod:`labsim.native`), as one group: the kernel formulas
(``kernels``) and the decode pricer built on them run compiled together or not at all.

>>> from labsim_gpus import native
>>> sorted(native.status())
['decode_pricer', 'kernels']
"""

from __future__ import annotations

from labsim import native as _native

#: modules compiled into twins, by twin name: their path under ``src/labsim_gpus``
#: (setup.py reads the next line)
MODULES = {"decode_pricer": "decode_pricer.py", "kernels": "kernels.py"}


def status() -> dict[str, str]:
    """How each module of :data:`MODULES` runs in this process: ``"compiled"`` or why not."""
    return _native.package_status(__name__.rpartition(".")[0], MODULES)
