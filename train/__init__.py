"""Training of FSA-Net variants: the paper's recipe, both protocols, DDP, resume, fusion, QAT.

`fsanet.train.train(TrainConfig(...))` runs a training; `fsanet train` is its command line.
"""

from fsanet.train.config import TrainConfig
from fsanet.train.loop import train

__all__ = ["TrainConfig", "train"]
