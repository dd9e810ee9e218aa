"""`fsanet fuse`: single-model checkpoints -> one fusion checkpoint (their average), as
`fsanet import-keras` writes a fusion of the authors' three files."""

from __future__ import annotations

from pathlib import Path

from fsanet import checkpoint
from fsanet import model as M
from fsanet.errors import DataError
from fsanet.files import sha256


def fuse(members: list[str | Path], output: str | Path) -> tuple[M.Fusion, list[dict]]:
    """Check every member (a single model each) before writing; returns the fusion and the
    per-member sources stored in it (variant, file, sha256, and the member's own sources)."""
    if len(members) < 2:
        raise DataError(f"fuse: got {len(members)} checkpoint(s); a fusion averages two or more (the paper: three)")
    models, sources = [], []
    for path in members:
        payload = checkpoint.load_payload(path)
        if payload.get("kind") != "model":
            raise DataError(f"{path}: is a {payload.get('kind')} checkpoint; fuse single models only")
        m = checkpoint.load(path)
        variant = M.variant_name(m.config) or "custom"
        models.append(m)
        sources.append(
            {"file": Path(path).name, "sha256": sha256(path), "variant": variant, "from": payload["sources"]}
        )
    fusion = M.Fusion(models).eval()
    checkpoint.save(fusion, output, sources)
    return fusion, sources


def is_paper_fusion(sources: list[dict]) -> bool:
    """Whether the members are FSA-Caps-Fusion's (1x1, var, w/o capsule), in that order."""
    return tuple(s["variant"] for s in sources) == M.FUSION_MEMBERS
