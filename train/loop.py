"""`train(cfg)`: the whole run: data, model, optimiser, epochs, validation, checkpoints, logs.

The run folder holds `config.json`, `data.json` (sets and drop counts; the protocol 2 split),
`log.csv`, `tensorboard/`, `curves.png`, `best.pt` and `last.pt` (fsanet checkpoints, as
`fsanet import-keras` writes) and `state.pt` (resume state, after every epoch).
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from fsanet.train import data, distributed, logs, state, steps
from fsanet.train.augment import TrainFaces
from fsanet.train.config import TrainConfig

from fsanet import checkpoint
from fsanet import model as M
from fsanet.errors import DataError
from fsanet.files import sha256


def train(cfg: TrainConfig, on_epoch_end: Callable[[int, dict], None] | None = None) -> dict:
    """Run (or resume) a training; under torchrun every process calls this. Returns a summary:
    run folder, best epoch and its MAE, checkpoint paths, and the per-epoch history."""
    from fsanet.scoped import tf32

    ctx = distributed.setup(cfg.device)
    # --no-amp means float32 on CUDA: PyTorch's default lets cuDNN convolutions use TF32 (10-bit
    # mantissa); switched off for this run only, the caller's setting comes back afterwards
    float32 = ctx.device.type == "cuda" and not cfg.amp
    try:
        with tf32(False) if float32 else contextlib.nullcontext():
            return Run(cfg, ctx).fit(on_epoch_end)
    finally:
        distributed.teardown(ctx)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_model(cfg: TrainConfig) -> tuple[torch.nn.Module, str, dict | None]:
    """A fresh variant, or the checkpoint to fine-tune; (model, variant name, init source)."""
    if cfg.init is None:
        name = cfg.variant or "fsanet-1x1-capsule"
        if name not in M.VARIANTS:
            raise DataError(f"--variant {name}: unknown; choose one of {', '.join(M.VARIANTS)}")
        return M.build(name), name, None
    if checkpoint.load_payload(cfg.init)["kind"] != "model":
        raise DataError(f"--init {cfg.init}: a fusion checkpoint; fine-tune each member, then `fsanet fuse` them")
    model = checkpoint.load(cfg.init)
    name = M.variant_name(model.config) or "custom"
    if cfg.variant and M.VARIANTS.get(cfg.variant) != model.config:
        raise DataError(f"--init {cfg.init} holds {name}, not --variant {cfg.variant}; drop --variant or match it")
    return model, name, {"file": Path(cfg.init).name, "sha256": sha256(cfg.init)}


class Run:
    def __init__(self, cfg: TrainConfig, ctx: distributed.Context):
        self.cfg, self.ctx, self.dir = cfg, ctx, cfg.run_dir
        if cfg.global_batch % ctx.world:
            raise DataError(f"batch {cfg.global_batch} does not split over {ctx.world} processes; use a multiple")
        if (self.dir / "state.pt").exists() and not cfg.resume:
            raise DataError(f"{self.dir}: holds a training run; pass --resume to continue it or pick another -o")
        seed_everything(cfg.seed)
        self.train_set, val_sets, split = data.open_sets(cfg)
        self.info = data.describe(self.train_set, val_sets, split)
        self.val = {k: (v.images(progress=ctx.main), v.poses) for k, v in val_sets.items()}
        self.model, self.variant, self.init = make_model(cfg)
        self.teacher = None
        if cfg.qat:
            self._prepare_qat()
        self.amp = cfg.amp and ctx.device.type == "cuda"
        self._build_training()
        self.history: list[dict] = []
        self.start, self.best = 0, {"epoch": 0, "mae": math.inf}

    def _prepare_qat(self) -> None:
        """--qat: NNCF quantizes the --init model (ranges from --calib); with --distill the float
        model stays beside it as the teacher."""
        from fsanet.train import qat

        from fsanet import calib as calib_mod

        if self.ctx.world > 1:
            raise DataError("--qat runs in one process (NNCF's quantizers are not set up for DDP here); drop torchrun")
        calib = calib_mod.load(self.cfg.calib)
        self.float_payload = checkpoint.load_payload(self.cfg.init)
        if self.cfg.distill:
            self.teacher = copy.deepcopy(self.model).eval().requires_grad_(False).to(self.ctx.device)
        self.model = qat.quantize_for_training(self.model, calib)
        self.calibration = calib.record()  # the record every quantized export writes
        targets = "float --init model (distillation)" if self.cfg.distill else "labels"
        self.info["qat"] = {"quantizers": qat.quantizer_count(self.model), "calibration": self.calibration,
                            "targets": targets}  # fmt: skip

    def _build_training(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        self.model.to(ctx.device)
        net = self.model
        if ctx.world > 1:
            net = distributed.sync_batchnorm(net, ctx.device)
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            net = torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)
        self.net = net
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(cfg.milestones), cfg.gamma)
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=self.amp)
        self.dataset = TrainFaces(self.train_set, cfg.seed, cfg.augment, cfg.scale_range, cfg.shift)
        # the same sampler for one process or many: one seeded permutation per epoch, cut into
        # global batches, each split across the ranks, the tail short of a batch left out
        self.sampler = torch.utils.data.DistributedSampler(
            self.dataset, ctx.world, ctx.rank, shuffle=True, seed=cfg.seed, drop_last=True
        )
        per = cfg.global_batch // ctx.world
        self.loader = torch.utils.data.DataLoader(
            self.dataset, per, sampler=self.sampler, num_workers=cfg.workers, drop_last=True,
            pin_memory=ctx.device.type == "cuda",
        )  # fmt: skip
        if len(self.loader) == 0:
            raise DataError(f"{self.train_set.describe()}: fewer faces than one batch of {cfg.global_batch}")

    def _resume(self) -> None:
        s = state.load_state(self.dir / "state.pt")
        diff = self.cfg.differences(s["config"])
        if diff:
            raise DataError(f"{self.dir}: --resume with a different recipe {diff} (stored, given); keep the original")
        self.model.load_state_dict(s["model"])
        self.optimizer.load_state_dict(s["optimizer"])
        self.scheduler.load_state_dict(s["scheduler"])
        self.scaler.load_state_dict(s["scaler"])
        state.set_rng_states(s["rng"])
        self.start, self.best, self.history = s["epoch"], dict(s["best"]), [dict(r) for r in s["history"]]

    def fit(self, on_epoch_end=None) -> dict:
        if self.cfg.resume:
            self._resume()
        if self.ctx.main:
            self._start_logs()
        try:
            for epoch in range(self.start + 1, self.cfg.epochs + 1):
                r = self._epoch(epoch)
                if on_epoch_end:
                    on_epoch_end(epoch, r)
                if self.cfg.stop_after == epoch:
                    break
        finally:
            if self.ctx.main:
                self.writer.close()
        return self.summary()

    def _start_logs(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cfg.save(self.dir / "config.json")
        data.write_description(self.dir / "data.json", self.info | {"variant": self.variant, "init": self.init})
        print(f"train: {self.info['train']['text']}")
        for k, v in self.info["val"].items():
            print(f"val {k}: {v['text']}")
        if self.info["protocol2_split"]:
            print(f"protocol 2 split (seed {self.cfg.seed}): test subjects {self.info['protocol2_split']['test']}")
        b, w = self.cfg.global_batch, self.ctx.world
        print(f"{self.variant} on {self.ctx.device} x{w}, batch {b} ({b // w} per process)")
        if self.cfg.qat:
            q, c = self.info["qat"], self.info["qat"]["calibration"]
            print(f"QAT: {q['quantizers']} NNCF quantizers, ranges from {c['count']} faces of {c['source']}; "
                  f"targets: {q['targets']}")  # fmt: skip
        purge = self.start + 1 if self.start else None  # a resumed run drops the stopped run's later events
        self.writer = logs.tensorboard_writer(self.dir / "tensorboard", purge_step=purge)

    def _epoch(self, epoch: int) -> dict:
        t0 = time.perf_counter()
        self.dataset.epoch = epoch
        self.sampler.set_epoch(epoch)
        lr = self.optimizer.param_groups[0]["lr"]
        desc = f"epoch {epoch}/{self.cfg.epochs}"
        losses = steps.train_epoch(
            self.net, self.loader, self.optimizer, self.scaler, self.ctx, self.amp, self.cfg.progress, desc,
            teacher=self.teacher, freeze_bn=self.cfg.qat,
        )  # fmt: skip
        self.scheduler.step()
        r = {}
        if self.ctx.main:
            val = steps.validate(self.model, self.val, self.ctx.device)
            r = logs.row(epoch, lr, float(np.mean(losses)), time.perf_counter() - t0, val) | {"step_losses": losses}
            self.history.append(r)
            self._save(epoch, r, val)
        distributed.barrier(self.ctx)
        return r

    def _save(self, epoch: int, r: dict, val: dict) -> None:
        names = list(self.val)
        first = val[names[0]]["mean"]
        source = {
            "variant": self.variant, "init": self.init, "data": self.info["train"]["source"],
            "protocol": self.cfg.protocol, "epoch": epoch, "val_mae": val,
        }  # fmt: skip
        self._write_checkpoint(self.dir / "last.pt", source)
        if first < self.best["mae"]:
            self.best = {"epoch": epoch, "mae": first, "val": names[0]}
            self._write_checkpoint(self.dir / "best.pt", source)
        rows = [{k: v for k, v in h.items() if k != "step_losses"} for h in self.history]
        logs.write_csv(self.dir / "log.csv", rows, logs.columns(names))
        logs.log_epoch(self.writer, r, names)
        for i, loss in enumerate(r["step_losses"]):
            self.writer.add_scalar("train/step_loss", loss, (epoch - 1) * len(self.loader) + i + 1)
        logs.plot_curves(self.dir / "curves.png", rows, names)
        state.save_state(
            self.dir / "state.pt", config=self.cfg.to_dict(), epoch=epoch, best=self.best, history=self.history,
            model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(), scaler=self.scaler.state_dict(),
        )  # fmt: skip
        m = val[names[0]]
        print(
            f"epoch {epoch}: loss {r['train_loss']:.3f}, {names[0]} MAE yaw {m['yaw']:.2f} pitch {m['pitch']:.2f} "
            f"roll {m['roll']:.2f} mean {m['mean']:.2f} (best {self.best['mae']:.2f} at epoch {self.best['epoch']})"
        )

    def _write_checkpoint(self, path: Path, source: dict) -> None:
        if not self.cfg.qat:
            checkpoint.save(self.model, path, [source])
            return
        from fsanet.train import qat

        qat.save_qat(self.model, path, self.float_payload, self.calibration, [source | {"qat": self.info["qat"]}])

    def summary(self) -> dict:
        return {
            "run": str(self.dir),
            "variant": self.variant,
            "best": self.best,
            "best_checkpoint": str(self.dir / "best.pt"),
            "last_checkpoint": str(self.dir / "last.pt"),
            "history": self.history,
        }
