"""`fsanet import-keras`: the authors' `.h5` files -> one checkpoint (several -> a fusion)."""

from __future__ import annotations

from pathlib import Path

from fsanet import checkpoint
from fsanet import model as M
from fsanet.files import sha256
from fsanet.keras_weights import load_keras


def import_keras(files: list[str | Path], output: str | Path) -> M.Fusion | M.FSANet | M.SSRNetMD:
    """Load each file (all are checked before anything is written) and save one checkpoint."""
    models, sources = [], []
    for f in files:
        m = load_keras(f)
        models.append(m)
        sources.append({"file": Path(f).name, "sha256": sha256(f), "variant": M.variant_name(m.config)})
    model = M.Fusion(models) if len(models) > 1 else models[0]
    checkpoint.save(model.eval(), output, sources)
    return model
