"""One training epoch (L1 loss on the three angles, mixed precision on CUDA) and validation."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from fsanet.train.distributed import Context, mean_over_ranks


def bar(iterable, ctx: Context, progress: bool | None, **kw):
    """tqdm on the main process (disable=None: only on a terminal), nothing on the others."""
    if not ctx.main or progress is False:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, leave=False, disable=None, **kw)


def train_epoch(
    model, loader, optimizer, scaler, ctx: Context, amp: bool, progress, desc: str, teacher=None, freeze_bn=False
) -> list[float]:
    """Run one epoch; returns the loss of every step, averaged over all processes.

    `teacher`: a model whose angles replace the labels (distillation). `freeze_bn`: batch norms
    keep their running statistics (QAT: the quantizer ranges were calibrated on them)."""
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    losses = []
    for x, y in bar(loader, ctx, progress, desc=desc, unit="batch"):
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        if teacher is not None:
            with torch.no_grad():
                y = teacher(x).float()
        with torch.autocast(ctx.device.type, dtype=torch.float16, enabled=amp):
            pred = model(x)
        loss = F.l1_loss(pred.float(), y)  # the paper's MAE loss: mean over angles and batch
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(mean_over_ranks(ctx, loss.detach())))
    return losses


@torch.no_grad()
def predict(model, crops: np.ndarray, device: torch.device, batch: int = 256) -> np.ndarray:
    """(N, 64, 64, 3) uint8 crops -> (N, 3) angles, in eval mode and float32."""
    model.eval()
    out = []
    for i in range(0, len(crops), batch):
        x = torch.from_numpy(np.ascontiguousarray(crops[i : i + batch].transpose(0, 3, 1, 2), dtype=np.float32))
        out.append(model(x.to(device)).float().cpu().numpy())
    return np.concatenate(out)


def validate(model, sets: dict[str, tuple[np.ndarray, np.ndarray]], device: torch.device) -> dict[str, dict]:
    """Per-angle MAE on each validation set, given as (crops, poses)."""
    from fsanet.accuracy import mae

    return {name: mae(predict(model, crops, device), poses) for name, (crops, poses) in sets.items()}
