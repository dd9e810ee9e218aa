"""fsanet-edge: FSA-Net head-pose models from PyTorch to TensorRT and TFLite, held to the paper."""

__version__ = "0.1.0"
