"""Convolutional networks layer by layer: ResNet-50's convolutions as implicit GEMMs.

A convolution of ``C_in → C_out`` channels with a ``k × k`` kernel producing ``H × W`` outputs
per image runs (cuDNN's implicit-GEMM algorithms) as ``C[M, N] = A[M, K]·W[N, K]ᵀ`` with
``M = batch·H·W``, ``N = C_out``, ``K = C_in·k²``; backward as the data-gradient GEMM
``(M, K, N)`` and the weight-gradient GEMM ``(N, K, M)``. Each convolution is followed by
batch normalisation and (mostly) ReLU: memory-bound passes over its output.

Only ResNet-50 (torchvision's v1.5: the stride on the 3×3 convolution) is built in; its
parameter count and forward FLOPs match the model database's entry (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

from labsim.errors import UsageError


@dataclass(frozen=True)
class Conv:
    c_in: int
    c_out: int
    k: int
    h: int  # output height (= width)

    @property
    def params(self) -> int:
        return self.c_in * self.c_out * self.k * self.k

    def flops(self) -> float:
        """Forward FLOPs per image."""
        return 2.0 * self.params * self.h * self.h


def resnet50() -> tuple[list[Conv], int]:
    """ResNet-50's convolutions (224×224 input) and the classifier's parameters."""
    convs = [Conv(3, 64, 7, 112)]
    c_in, size = 64, 56
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            s = stride if b == 0 else 1
            out = size // s
            convs += [Conv(c_in, width, 1, size), Conv(width, width, 3, out), Conv(width, 4 * width, 1, out)]
            if b == 0:
                convs.append(Conv(c_in, 4 * width, 1, out))  # downsample
            c_in, size = 4 * width, out
    return convs, 2048 * 1000 + 1000


def network(model) -> tuple[list[Conv], int]:
    """The convolutions and the other parameters (classifier) of CNN *model*."""
    if model.name.lower().replace("_", "-") in ("resnet-50", "resnet50"):
        return resnet50()
    raise UsageError(f"workload.model: {model.name!r} is a CNN without a layer table; built in: ResNet-50")


def parameters(model) -> int:
    """Parameters: convolution weights, batch-norm scale and shift, the classifier."""
    convs, head = network(model)
    return sum(c.params + 2 * c.c_out for c in convs) + head


def cnn_costs_class():
    """:class:`CnnCosts` (built on first use: it extends :class:`~labsim_training.costs.JobCosts`)."""
    from labsim_training.costs import JobCosts, Piece

    class CnnCosts(JobCosts):
        """Prices of a CNN's iteration on one GPU (data parallel only: no TP or PP)."""

        def __init__(self, model, job, layout, device, comms):
            self.model, self.job, self.layout, self.device, self.comms = model, job, layout, device, comms
            # fp32 runs its matrix work in TF32 where the GPU has it (PyTorch's default for
            # convolutions and cuDNN), on the CUDA cores in FP32 before Ampere
            self.dtype = layout.precision if layout.precision != "fp32" else (
                "tf32" if device.supports("tf32") else "fp32")
            self.act_bytes = 4.0 if layout.precision == "fp32" else 2.0
            self.convs, self.head_params = network(model)
            self.p2p, self.p2p_call = {}, {}
            b = layout.micro_batch
            fwd_k, bwd_k, ew_f, ew_b, flops = [], [], 0.0, 0.0, 0.0
            for conv in self.convs:
                m, n, k = b * conv.h * conv.h, conv.c_out, conv.c_in * conv.k * conv.k
                fwd_k.append(device.gemm_time(m, n, k, self.dtype))
                bwd_k += [device.gemm_time(m, k, n, self.dtype), device.gemm_time(n, k, m, self.dtype)]
                out = m * n * self.act_bytes
                bn_relu = [self._ew(2 * out), self._ew(2 * out)]       # batch norm, ReLU
                back = [self._ew(3 * out), self._ew(3 * out)]          # their gradients
                fwd_k += bn_relu
                bwd_k += back
                ew_f += sum(bn_relu)
                ew_b += sum(back)
                flops += 2.0 * m * n * k
            fc = device.gemm_time(b, 1000, 2048, self.dtype)
            fwd_k.append(fc)
            bwd_k += [device.gemm_time(b, 2048, 1000, self.dtype), device.gemm_time(1000, 2048, b, self.dtype)]
            flops += 2.0 * b * 1000 * 2048
            self.net_fwd = self._launched(fwd_k, [], flops, ew_f)
            self.net_bwd = self._launched(bwd_k, [], 2 * flops, ew_b)
            if layout.recompute == "full":
                self.net_bwd = self.net_bwd + self.net_fwd
            self.model_flops = 3 * flops
            # autograd keeps two tensors per convolution's output: the convolution's (batch
            # norm's backward reads it) and the ReLU's (its backward and the next convolution's
            # weight gradient read it); torchvision's ReLU is in place, so batch norm's output
            # is overwritten rather than kept. Gavel's V100 (16 GB) ran ResNet-50 fp32 at batch
            # 128 beside one at 16, which three tensors (133 MB per image) would not allow.
            self.activation_bytes = sum(2.0 * b * c.h * c.h * c.c_out * self.act_bytes for c in self.convs)

        def chunk(self, layers, first, last):
            return self.net_fwd, self.net_bwd

        def layer_params(self):
            return parameters(self.model) / len(self.convs)

        def chunk_params(self, stage, chunk):
            return parameters(self.model)

        def model_flops_per_iteration(self):
            return self.model_flops * self.layout.num_micro * self.layout.dp

    del Piece
    return CnnCosts
