"""labsim-gpus' compiled twins (:mod:`labsim.native`): the cost-model modules its ``setup.py``
compiles with mypyc at install, where mypyc and a C compiler are at hand.

``labsim_gpus.native.<name>`` is the twin of the module :data:`MODULES` names; each module
swaps its twin's definitions in at the end of its body (``labsim.native.use_twin``), only
when the twin was built from its current source.

>>> from labsim_gpus import native
>>> sorted(native.status())
['decode_pricer']
"""

from __future__ import annotations

from labsim import native as _native

#: modules compiled into twins, by twin name: their path under ``src/labsim_gpus`` (setup.py reads this line)
MODULES = {"decode_pricer": "decode_pricer.py"}


def status() -> dict[str, str]:
    """How each module of :data:`MODULES` runs in this process: ``"compiled"`` or why not."""
    found = _native.status({f"{__name__}.{name}": "labsim_gpus." + path[:-3].replace("/", ".")
                            for name, path in MODULES.items()})
    return {name.rpartition(".")[2]: how for name, how in found.items()}
