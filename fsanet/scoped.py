"""Process-wide settings changed only for a block and put back after it.

A library function that quiets a logger, sets torch's thread count or switches TF32 off would
otherwise change the caller's process for good; each does it through one of these instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def logger_level(name: str, level: int = logging.ERROR) -> Iterator[None]:
    """The named logger and its handlers at `level` inside the block (NNCF's own
    `set_log_level` sets the handlers too), restored afterwards."""
    logger = logging.getLogger(name)
    saved = (logger.level, [(h, h.level) for h in logger.handlers])
    logger.setLevel(level)
    for h in logger.handlers:
        h.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(saved[0])
        for h, lvl in saved[1]:
            h.setLevel(lvl)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count inside the block; None leaves it alone."""
    import torch

    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads and torch.get_num_threads() != saved:
            torch.set_num_threads(saved)


@contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 for CUDA matmuls and cuDNN convolutions inside the block."""
    import torch

    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
