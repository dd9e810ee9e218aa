"""fsanet-edge: FSA-Net head-pose models from PyTorch to TensorRT and TFLite, held to the paper."""

__version__ = "0.1.0"


def load(model=None, threads: int | None = None, **options):
    """A `PoseEstimator` (fsanet.runtimes.estimator) for `model`: any artifact (`.pt`, `.onnx`,
    `.tflite`, `.engine`; foreign files as `path@format`), by default the FSA-Net authors'
    300W-LP fusion shipped in the package (Apache-2.0, fsanet/models/NOTICE; a PyTorch
    checkpoint, so it needs the `torch` extra). `options` go to `fsanet.runtimes.open`.

        with fsanet.load() as est:
            angles = est.predict(crops)  # (N, 64, 64, 3) BGR official crops -> (N, 3) degrees
    """
    from fsanet import runtimes
    from fsanet.packaged import default_model
    from fsanet.runtimes.estimator import PoseEstimator

    return PoseEstimator(runtimes.open(model or default_model(), threads=threads, **options))
