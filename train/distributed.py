"""Several processes (torchrun) or one: process group, device, synchronised batch norm.

Under torchrun (WORLD_SIZE > 1) each process joins the group: NCCL on CUDA, gloo on the CPU.
The global batch is split evenly, so with synchronised batch norm and gradient averaging one
step of N processes is the step of one process on the whole batch, up to float rounding.
PyTorch's SyncBatchNorm runs on GPUs only; on the CPU `GlobalBatchNorm2d` does the same with
differentiable all-reduces (it keeps BatchNorm2d's parameters, buffers and state-dict keys).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from fsanet.errors import DataError


@dataclass(frozen=True)
class Context:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str | None = None) -> Context:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DataError(f"device {device}: CUDA is not available in this PyTorch build or machine")
        if dev.index is None:  # plain "cuda": this process's GPU (set_device and DDP need an index)
            dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return Context(rank, world, local, dev)


def teardown(ctx: Context) -> None:
    if ctx.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: Context) -> None:
    if ctx.world > 1:
        dist.barrier()


def mean_over_ranks(ctx: Context, value: torch.Tensor) -> torch.Tensor:
    """The average of a tensor over all processes (for logging the global loss)."""
    if ctx.world == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / ctx.world


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch over all ranks.

    Mean first, then the centred second moment (two all-reduces), as one process computes
    them; gradients flow back through the all-reduces (torch.distributed.nn).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = (0, 2, 3)
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        dist.all_reduce(count)
        mean = all_reduce(x.sum(dims)) / count
        centred = x - mean[None, :, None, None]
        var = all_reduce((centred * centred).sum(dims)) / count
        self._update_running(mean.detach(), var.detach(), count)
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        return y * self.weight[None, :, None, None] + self.bias[None, :, None, None]

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        self.num_batches_tracked += 1
        m = self.momentum  # BatchNorm2d: running = (1 - m) running + m batch, unbiased variance
        self.running_mean.mul_(1 - m).add_(m * mean)
        self.running_var.mul_(1 - m).add_(m * var * count / (count - 1).clamp(min=1))


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Batch norm over the global batch: PyTorch's SyncBatchNorm on GPUs, ours on the CPU."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            bn = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine)
            bn.load_state_dict(child.state_dict())
            setattr(model, name, bn)
        else:
            sync_batchnorm(child, device)
    return model


def plain_batchnorm(model: nn.Module) -> nn.Module:
    """Undo `sync_batchnorm` (for saving a model that loads anywhere, and for export)."""
    for name, child in model.named_children():
        if isinstance(child, (nn.SyncBatchNorm, GlobalBatchNorm2d)):
            bn = nn.BatchNorm2d(child.num_features, child.eps, child.momentum, child.affine)
            bn.load_state_dict(child.state_dict())
            setattr(model, name, bn.to(child.weight.device))
        else:
            plain_batchnorm(child)
    return model
