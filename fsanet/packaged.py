"""The models shipped inside the package (`fsanet/models/`), and the one every command and
`fsanet.load()` use when given none.

- `300wlp` (the default): the FSA-Net authors' FSA-Caps-Fusion trained on 300W-LP, their
  capsule, var_capsule and noS_capsule models (Apache-2.0, `fsanet/models/NOTICE`), converted
  from their Keras `.h5` files by `fsanet import-keras` (`make packaged-model` rebuilds it).
- `synthetic`: the project's own fusion trained on synthetic heads only, the training example
  (`make default-model` rebuilds it).

Each file has a manifest beside it (`<file>.json`, from `make packaged-model` or this module's
`write_manifest`); a file that no longer matches its manifest's sha256 is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fsanet.errors import DataError

MODELS_DIR = Path(__file__).resolve().parent / "models"
AUTHORS_REPOSITORY = "https://github.com/shamangary/FSA-Net"


@dataclass(frozen=True)
class PackagedModel:
    name: str
    file: str
    description: str
    licence: str
    rebuild: str

    @property
    def path(self) -> Path:
        return MODELS_DIR / self.file

    def describe(self) -> str:
        return f"{self.description}, {self.licence}: {self.file}"


PACKAGED = {
    "300wlp": PackagedModel(
        "300wlp",
        "fsanet-fusion-300wlp.pt",
        "the FSA-Net authors' 300W-LP fusion (capsule, var_capsule, noS_capsule)",
        "Apache-2.0 (fsanet/models/NOTICE)",
        "make packaged-model",
    ),
    "synthetic": PackagedModel(
        "synthetic",
        "fsanet-fusion-synthetic.pt",
        "the project's fusion trained on synthetic heads",
        "Apache-2.0 (this project)",
        "make default-model",
    ),
}
DEFAULT = "300wlp"
DEFAULT_HELP = "the FSA-Net authors' 300W-LP fusion shipped in the package (Apache-2.0)"


def packaged(name: str = DEFAULT) -> PackagedModel:
    """The packaged model called `name`, checked to be there and to match its manifest."""
    if name not in PACKAGED:
        raise DataError(f"--weights {name}: no such packaged model; choose one of {', '.join(PACKAGED)}")
    model = PACKAGED[name]
    if not model.path.is_file():
        raise DataError(f"{model.path}: the packaged model is missing; rebuild it with `{model.rebuild}`")
    _check_manifest(model)
    return model


def default_model(name: str = DEFAULT) -> Path:
    """The file of a packaged model (the authors' 300W-LP fusion unless `name` says otherwise)."""
    return packaged(name).path


def is_model_file(arg: str) -> bool:
    """Whether a command-line argument names a model file (its suffix has a runtime), so that
    `fsanet predict MODEL IMAGE` keeps working beside `fsanet predict IMAGE`."""
    from fsanet.runtimes import BACKENDS, model_file

    return model_file(arg).suffix.lower() in BACKENDS


def chosen_model(positional: str | None, option: str | None) -> str:
    """The model a command runs: the one given (as an argument or with -m), else the default."""
    if positional and option:
        raise DataError(f"two models given ({positional} and -m {option}); give one")
    return positional or option or str(default_model())


def _check_manifest(model: PackagedModel) -> None:
    import json

    from fsanet.files import sha256

    side = model.path.with_name(model.file + ".json")
    if not side.is_file():
        return  # the synthetic fusion predates manifests for checkpoints; make default-model writes none
    recorded = json.loads(side.read_text()).get("sha256")
    if recorded != sha256(model.path):
        raise DataError(
            f"{model.path}: does not match the sha256 in {side.name}; the package is damaged: reinstall it "
            f"or rebuild the file with `{model.rebuild}`"
        )


def write_manifest(path: str | Path, sources: list[dict]) -> Path:
    """The sidecar manifest of the packaged authors' fusion: the model-input conventions, the
    source files with their sha256, the licence, and how it was converted."""
    import torch

    from fsanet import __version__
    from fsanet.manifest import base_manifest, write_sidecar

    manifest = base_manifest(
        precision="fp32",
        backend_format="pytorch-checkpoint",
        model=PACKAGED[DEFAULT].description,
        members=[s["variant"] for s in sources],
        source={
            "repository": AUTHORS_REPOSITORY,
            "folder": "pre-trained/300W_LP_models",
            "files": sources,
            "licence": "Apache-2.0 (LICENSE-FSA-Net beside this file)",
        },
        converted_by=f"fsanet import-keras (fsanet-edge {__version__}, torch {torch.__version__})",
    )
    return write_sidecar(path, manifest)


def rebuild(h5_files: list[str | Path]) -> Path:
    """`make packaged-model`: the authors' three `.h5` files -> the packaged fusion and its
    manifest, with the project's own importer (the same bytes for the same files and torch)."""
    from fsanet import checkpoint
    from fsanet.importer import import_keras

    target = PACKAGED[DEFAULT].path
    import_keras(h5_files, target)
    write_manifest(target, checkpoint.load_payload(target)["sources"])
    return target


if __name__ == "__main__":
    import sys

    print(f"wrote {rebuild(sys.argv[1:])}")
