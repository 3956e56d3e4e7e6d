"""labsim-gpus: the GPU catalog and the calibrated roofline cost model.

>>> import labsim
>>> h100 = labsim.device("h100")                                   # doctest: +SKIP
>>> h100.gemm_time(8, 8192, 8192, dtype="fp8")                      # doctest: +SKIP

Modules: :mod:`~labsim_gpus.catalog` (datasheet presets), :mod:`~labsim_gpus.kernels`
(the roofline), :mod:`~labsim_gpus.device` (:class:`GPU`), :mod:`~labsim_gpus.params`
(fitted efficiencies and their transfer), :mod:`~labsim_gpus.calibrate` and
:mod:`~labsim_gpus.profiles` (fitting and profile files), :mod:`~labsim_gpus.memory`
(what fits in device memory), :mod:`~labsim_gpus.plugin` (the entry point).
"""

from labsim_gpus.device import GPU
from labsim_gpus.dtypes import DTYPE_BYTES
from labsim_gpus.params import CostParams

__all__ = ["GPU", "CostParams", "DTYPE_BYTES"]
