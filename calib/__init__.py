"""Calibration sets for post-training quantization: build, store, feed (numpy + OpenCV only)."""

from fsanet.calib.build import CalibrationSet, build, is_calibration_file, load

__all__ = ["CalibrationSet", "build", "is_calibration_file", "load"]
