"""Training of FSA-Net variants: the paper's recipe, both protocols, DDP, resume, fusion, QAT.

`fsanet.train.train(TrainConfig(...))` runs a training; `fsanet train` is its command line.
The configuration imports no torch (the CLI reads its defaults); `train` loads the loop, and
torch with it, when it is first used.
"""

from fsanet.train.config import TrainConfig

__all__ = ["TrainConfig", "train"]


def __getattr__(name: str):
    if name == "train":
        from fsanet.train.loop import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
