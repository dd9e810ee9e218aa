"""Checks on the files a command will write, made before any work starts.

A command that fails after a minute of work because its output cannot be written, or that
overwrites one of its own inputs, is worse than one that refuses at once: each command checks
its outputs here first (not an input, the right kind, in a folder it can write to).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from fsanet.errors import DataError


def model_path(spec: str | Path) -> Path:
    """The file of a model argument, without its `@format` suffix."""
    from fsanet.runtimes import model_file

    return model_file(spec)


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return a.samefile(b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _refuse_inputs(path: Path, inputs: Iterable, option: str) -> None:
    for i in inputs:
        if i is None or str(i).startswith("synthetic"):
            continue
        if _same(path, model_path(i)):
            raise DataError(f"{option} {path}: is also an input of this command; write to another path")


def _writable_ancestor(path: Path, option: str) -> Path:
    """The nearest existing folder at or above `path`, after proving a file can be made in it."""
    folder = path
    while not folder.exists():
        if folder.parent == folder:
            break
        folder = folder.parent
    if not folder.is_dir():
        raise DataError(f"{option} {path}: {folder} is a file, not a folder; choose a path in a folder")
    try:  # os.access says yes to root on a read-only mount; only a real file proves it
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".fsanet-write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise DataError(f"{option} {path}: cannot write in {folder} ({e.strerror}); choose a writable folder") from None
    return folder


def check_output_file(path: str | Path | None, inputs: Iterable = (), option: str = "-o") -> Path | None:
    """`path` can be written as a file: not a folder, not one of `inputs`, in a writable folder."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{option} {path}: is a folder; give a file name")
    _refuse_inputs(path, inputs, option)
    _writable_ancestor(path.parent, option)
    return path


def check_output_dir(path: str | Path | None, inputs: Iterable = (), option: str = "-o") -> Path | None:
    """`path` can be made (or used) as an output folder: not a file, not an input, writable."""
    if path is None:
        return None
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{option} {path}: is a file; give a folder for the outputs")
    _refuse_inputs(path, inputs, option)
    _writable_ancestor(path, option)
    return path


def check_inputs_exist(paths: Iterable, what: str = "model file") -> None:
    """Every named input file exists (models given as `path@format` are checked without it)."""
    for p in paths:
        if p is None or str(p).startswith("synthetic"):
            continue
        f = model_path(p)
        if not f.exists():
            raise DataError(f"{f}: no such {what}")
