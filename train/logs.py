"""Run logs: one CSV row per epoch, TensorBoard scalars, and a PNG of the curves."""

from __future__ import annotations

import csv
import io
import sys
import types
from pathlib import Path

from fsanet.errors import BackendUnavailable
from fsanet.files import write_text

ANGLES = ("yaw", "pitch", "roll", "mean")


def tensorboard_writer(log_dir: Path, purge_step: int | None = None):
    """A SummaryWriter; TensorBoard's TensorFlow stub is chosen so that writing scalars never
    imports TensorFlow (seconds and gigabytes when it happens to be installed). TensorBoard
    picks it once, when its lazy `compat.tf` is first resolved: the marker module that asks for
    it is in sys.modules only for that moment."""
    marker = "tensorboard.compat.notf"
    added = marker not in sys.modules
    if added:
        sys.modules[marker] = types.ModuleType(marker)
    try:
        from tensorboard import compat
        from torch.utils.tensorboard import SummaryWriter

        compat.tf.__name__  # noqa: B018 - resolves TensorBoard's lazy TF choice while the marker is there
    except ImportError as e:
        raise BackendUnavailable("tensorboard (for torch.utils.tensorboard)", "train") from e
    finally:
        if added:
            del sys.modules[marker]
    return SummaryWriter(str(log_dir), purge_step=purge_step)


def columns(val_names: list[str]) -> list[str]:
    cols = ["epoch", "lr", "train_loss", "seconds"]
    return cols + [f"{v}_{a}" for v in val_names for a in ANGLES]


def row(epoch: int, lr: float, loss: float, seconds: float, val: dict[str, dict]) -> dict:
    r = {"epoch": epoch, "lr": lr, "train_loss": loss, "seconds": round(seconds, 3)}
    return r | {f"{v}_{a}": m[a] for v, m in val.items() for a in ANGLES}


def read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def write_csv(path: Path, rows: list[dict], cols: list[str]) -> None:
    """Rewritten whole each epoch (small), so a resumed run never leaves duplicate epochs."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


def log_epoch(writer, r: dict, val_names: list[str]) -> None:
    e = int(r["epoch"])
    writer.add_scalar("train/loss", r["train_loss"], e)
    writer.add_scalar("train/lr", r["lr"], e)
    for v in val_names:
        for a in ANGLES:
            writer.add_scalar(f"val_{v}/mae_{a}", r[f"{v}_{a}"], e)
    writer.flush()


def plot_curves(path: Path, rows: list[dict], val_names: list[str]) -> Path:
    """Training loss and validation MAE per epoch."""
    try:
        from matplotlib.figure import Figure  # no pyplot: the caller's matplotlib backend stays as it is
    except ImportError as e:
        raise BackendUnavailable("matplotlib (for the training curves)", "train") from e
    from fsanet.files import atomic_write

    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(10, 4))
    a, b = fig.subplots(1, 2)
    a.plot(epochs, [r["train_loss"] for r in rows], marker="o")
    a.set(xlabel="epoch", ylabel="L1 loss (degrees)", title="training loss")
    for v in val_names:
        for ang in ANGLES:
            b.plot(epochs, [r[f"{v}_{ang}"] for r in rows], marker="o" if ang == "mean" else None, label=f"{v} {ang}")
    b.set(xlabel="epoch", ylabel="MAE (degrees)", title="validation MAE")
    b.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return path
