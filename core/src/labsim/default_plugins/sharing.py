"""The kernel's default sharing mode: one framework per GPU, its work run as it comes."""

from __future__ import annotations

from labsim.components import SharingMode
from labsim.errors import UsageError
from labsim.hookspecs import hookimpl


class Exclusive(SharingMode):
    """One framework per GPU (the default): its work runs at full speed, as it comes."""

    name = "exclusive"
    is_default = True
    config_schema = {"type": "object", "properties": {"type": {}}, "additionalProperties": False}

    def admit(self, tenant: str, placement: dict) -> None:
        if self.tenants and tenant not in self.tenants:
            raise UsageError(
                f"GPU {self.gpu.gpu_id} is placed under both {self.tenants[0]!r} and {tenant!r}, and "
                "exclusive use admits one framework per GPU; place them on different GPUs, or share "
                "the GPU with hardware_profile.sharing (`labsim list sharing_modes`)")
        if tenant not in self.tenants:
            self.tenants.append(tenant)

    def execute(self, tenant: str, seconds: float, membound: float | None = None):
        return self.context.env.timeout(seconds)

    def is_alone(self, tenant: str) -> bool:
        return True


@hookimpl
def register_sharing_modes(register):
    """``exclusive``: the default."""
    register(Exclusive)
