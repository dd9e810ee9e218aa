"""What a long command prints: one line per stage, and the libraries' output in a log file.

A stage runs inside `Console.stage(name)`: a tqdm bar of its own on the terminal while it runs,
then one line with what it did and how long it took. Everything else the process prints
meanwhile (Python logging, warnings, other tqdm bars, and what C/C++ code writes straight to
file descriptors 1 and 2: absl, MLIR, TensorFlow, ONNX Runtime) goes to `<logs>/<stage>.log`,
which the stage line names when the stage fails. Verbose: that output also shows live on
stderr, and the log still receives it.

Why file descriptors: C++ libraries write to fd 2 past Python's `sys.stderr`, so only
`os.dup2` over fds 1 and 2 catches them. `sys.stdout`/`sys.stderr` are switched as well,
because a test harness or an embedding program may have replaced them with objects that do
not write to fds 1 and 2 at all.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NAME_WIDTH = 12
# the verbose mode's tee: a child process, so that a C++ library blocked on a full pipe while
# holding the GIL cannot stall the copying (a thread of this process would need that GIL)
TEE = (
    "import sys\n"
    "with open(sys.argv[1], 'ab') as log:\n"
    "    for chunk in iter(lambda: sys.stdin.buffer.read1(65536), b''):\n"
    "        log.write(chunk); log.flush(); sys.stdout.buffer.write(chunk); sys.stdout.buffer.flush()\n"
)


def seconds_text(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


class Stage:
    """What a running stage reports: progress on its bar, and the text of its final line."""

    def __init__(self, bar):
        self.bar = bar
        self.detail = ""
        self._stop = threading.Event()
        if bar is not None and not bar.disable:  # the elapsed time moves on between updates too
            threading.Thread(target=self._tick, daemon=True).start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self.bar.refresh()

    def close(self) -> None:
        self._stop.set()
        if self.bar is not None:
            self.bar.close()

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def set_total(self, total: int) -> None:
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def done(self, detail: str) -> None:
        """What the stage's line says once it has finished (counts, the files it wrote)."""
        self.detail = detail


class Console:
    """Stage lines on the terminal, library output in `logs/<stage>.log` (also live when verbose)."""

    def __init__(self, logs: str | Path, verbose: bool = False):
        self.logs, self.verbose = Path(logs), verbose
        self.seconds: dict[str, float] = {}

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name.replace(' ', '-')}.log"

    @contextmanager
    def stage(self, name: str, total: int | None = None, unit: str = "step") -> Iterator[Stage]:
        log = self.log_path(name)
        created = [d for d in (log.parent.parent, log.parent) if not d.exists()]
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_bytes(b"")  # this run's output only
        out, own = _terminal()
        bar = _bar(out, name, total, unit)
        stage = Stage(bar)
        started = time.perf_counter()
        try:
            with _captured(log, self.verbose):
                yield stage
        except BaseException as e:
            seconds = self.seconds[name] = time.perf_counter() - started
            how = "interrupted" if isinstance(e, KeyboardInterrupt) else "FAILED"
            where = f"its log: {log}" if _kept(log, created) else "the libraries printed nothing"
            stage.close()
            print(f"{name:<{NAME_WIDTH}} {how} after {seconds_text(seconds)}; {where}", file=out, flush=True)
            raise
        else:
            seconds = self.seconds[name] = time.perf_counter() - started
            _kept(log, created)
            stage.close()
            print(f"{name:<{NAME_WIDTH}} {stage.detail:<58} {seconds_text(seconds):>10}", file=out, flush=True)
        finally:
            if own:
                out.close()


def _kept(log: Path, created: list[Path]) -> bool:
    """Whether the stage's log holds anything; an empty one is removed, with the folders made
    for it (a command that fails on bad input before any work leaves no output folder)."""
    if log.stat().st_size:
        return True
    log.unlink()
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:  # not empty: other stages' logs, or the command's own files
            break
    return False


def _terminal() -> tuple[io.TextIOBase, bool]:
    """Where the stage lines go: this process's stdout, on a descriptor of its own when stdout
    is fd 1 (which the stage redirects); True when that stream is ours to close."""
    stream = sys.stdout
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without a descriptor
        return stream, False
    if fd not in (1, 2):
        return stream, False
    stream.flush()
    return os.fdopen(os.dup(fd), "w", buffering=1, encoding=stream.encoding or "utf-8", errors="replace"), True


def _bar(out, name: str, total: int | None, unit: str):
    """A tqdm bar on the terminal (none when `out` is not one, or without tqdm: a runtime-only
    install), cleared when the stage ends: its line replaces it."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    counts = "{bar:30} {n_fmt}/{total_fmt} " + unit if total is not None else "running"
    return tqdm(
        total=total,
        file=out,
        leave=False,
        disable=None,  # a terminal only: a pipe or a CI log gets the final line alone
        dynamic_ncols=True,
        bar_format="{desc:<" + str(NAME_WIDTH) + "} " + counts + "  {elapsed}",
        desc=name,
    )


class _Switch(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr during a stage. A logging handler or a library that
    kept a reference to it keeps writing somewhere valid after the stage: to the stream it
    replaced, once the stage is over."""

    def __init__(self, target, original):
        self.target, self.original = target, original

    def write(self, text: str) -> int:
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()

    def fileno(self) -> int:
        return self.target.fileno()

    def isatty(self) -> bool:
        return False if self.target is not self.original else self.original.isatty()

    @property
    def encoding(self):
        return getattr(self.target, "encoding", "utf-8")

    def writable(self) -> bool:
        return True


def _flush_c_stdio() -> None:
    """Flush C's own stdout/stderr buffers (printf in a library), so that none of their text
    lands on the terminal after the stage."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library to ask (a static build)
        pass


@contextmanager
def _captured(log: Path, verbose: bool) -> Iterator[None]:
    """fds 1 and 2, sys.stdout and sys.stderr into `log` (verbose: through a tee that also
    shows them on the original stderr)."""
    for s in (sys.stdout, sys.stderr):
        s.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    tee = None
    if verbose:
        read, sink = os.pipe()
        tee = subprocess.Popen([sys.executable, "-c", TEE, str(log)], stdin=read, stdout=saved[2])
        os.close(read)
    else:
        sink = os.open(log, os.O_WRONLY | os.O_APPEND)
    text = os.fdopen(os.dup(sink), "w", buffering=1, encoding="utf-8", errors="replace")
    switches = [_Switch(text, sys.stdout), _Switch(text, sys.stderr)]
    try:
        os.dup2(sink, 1)
        os.dup2(sink, 2)
        sys.stdout, sys.stderr = switches
        yield
    finally:
        for s in (*switches, *(sw.original for sw in switches)):
            try:
                s.flush()
            except (OSError, ValueError):
                pass
        _flush_c_stdio()
        sys.stdout, sys.stderr = (sw.original for sw in switches)
        for sw in switches:
            sw.target = sw.original
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        text.close()
        os.close(sink)
        if tee is not None:
            _finish(tee)


def _finish(tee: subprocess.Popen) -> None:
    """Wait for the tee to copy what is left; a child of the stage that still holds the pipe
    open must not hold the command up."""
    try:
        tee.wait(timeout=10)
    except subprocess.TimeoutExpired:
        tee.kill()
        tee.wait()
