"""What a long command prints: one line per stage, and the libraries' output in a log file.

A stage runs inside `Console.stage(name)`: a tqdm bar of its own on the terminal while it runs,
then one line with what it did and how long it took. Everything else the process prints
meanwhile (Python logging, warnings, other tqdm bars, and what C/C++ code writes straight to
file descriptors 1 and 2: absl, MLIR, TensorFlow, ONNX Runtime) goes to `<logs>/<stage>.log`,
which the stage line names when the stage fails (`<stage>-2.log`, ... when that name is
taken: a run writes only files it created). Verbose: that output also shows live on
stderr, and the log still receives it.

Why file descriptors: C++ libraries write to fd 2 past Python's `sys.stderr`, so only
`os.dup2` over fds 1 and 2 catches them. `sys.stdout`/`sys.stderr` are switched as well,
because a test harness or an embedding program may have replaced them with objects that do
not write to fds 1 and 2 at all.
"""

from __future__ import annotations

import errno
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
    """Stage lines on the terminal, library output in `logs/<stage>.log` (also live when verbose).

    A log is a file this run creates (O_EXCL): `<stage>.log`, or `<stage>-2.log`, ... when that
    name is taken (a user's file, another run's log), so nothing that was there is truncated or
    removed. An empty log is removed afterwards, with the folders this run made for it."""

    def __init__(self, logs: str | Path, verbose: bool = False):
        self.logs, self.verbose = Path(logs), verbose
        self.seconds: dict[str, float] = {}
        self.kept: list[Path] = []  # the logs this run wrote something into and left
        self._made: list[Path] = []  # folders this run created for its logs, outermost first

    @contextmanager
    def stage(self, name: str, total: int | None = None, unit: str = "step") -> Iterator[Stage]:
        log = self._new_log(name.replace(" ", "-"))
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
            where = f"its log: {log}" if self._kept(log) else "the libraries printed nothing"
            stage.close()
            print(f"{name:<{NAME_WIDTH}} {how} after {seconds_text(seconds)}; {where}", file=out, flush=True)
            raise
        else:
            seconds = self.seconds[name] = time.perf_counter() - started
            self._kept(log)
            stage.close()
            print(f"{name:<{NAME_WIDTH}} {stage.detail:<58} {seconds_text(seconds):>10}", file=out, flush=True)
        finally:
            if own:
                out.close()

    def _new_log(self, stem: str) -> Path:
        """A log file created now, under a name nothing holds (a concurrent run may remove a
        logs folder it made between our mkdir and our open: then make it again)."""
        for _ in range(3):
            self._made += made_folders(self.logs)
            try:
                return exclusive_file(self.logs, stem, ".log")
            except FileNotFoundError:
                continue
        return exclusive_file(self.logs, stem, ".log")

    def _kept(self, log: Path) -> bool:
        """Whether the stage's log holds anything; an empty one (ours) is removed, with the
        folders this run made for it (a command refused before any work leaves no folder)."""
        try:
            if log.stat().st_size:
                self.kept.append(log)
                return True
            log.unlink()
        except FileNotFoundError:  # removed by someone else meanwhile: nothing of ours to keep
            return False
        self._made = remove_empty(self._made)
        return False


def made_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; returns the ones created, outermost first."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    made = []
    for f in reversed(missing):
        try:
            f.mkdir()
        except FileExistsError:  # another process made it: not ours to remove
            continue
        made.append(f)
    return made


def remove_empty(folders: list[Path]) -> list[Path]:
    """Remove the folders this run made (`made_folders`' list), innermost first, while empty;
    returns those left."""
    left = list(folders)
    while left:
        try:
            left[-1].rmdir()
        except FileNotFoundError:
            pass
        except OSError:  # not empty: other logs, the command's own files, another run's
            break
        left.pop()
    return left


def exclusive_file(folder: Path, stem: str, suffix: str) -> Path:
    """A new empty file `folder/stem+suffix`, or `stem-2+suffix`, ... : created with O_EXCL, so
    it is never a file that was there before."""
    for n in range(1, 10_000):
        path = folder / f"{stem}{'' if n == 1 else f'-{n}'}{suffix}"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(errno.EEXIST, "no free log name", str(folder / f"{stem}{suffix}"))


LOCK_NAME = ".fsanet.lock"


@contextmanager
def output_lock(folder: str | Path, option: str = "-o", name: str = LOCK_NAME) -> Iterator[Path]:
    """Hold `folder` (created if missing) for this run: a second fsanet run writing into it is
    refused at once (exit 2) instead of the two replacing each other's files. An flock on
    `folder/name`: the kernel drops it when the process ends, however it ends, so the lock of
    a killed run never blocks. The lock file, and the folders made for it, are removed at the
    end when this run created them and they are empty."""
    import fcntl

    from fsanet.errors import DataError

    folder = Path(folder)
    path, made = folder / name, []
    try:
        for _ in range(5):  # the folder or the file may vanish under us: a finishing run removes its own
            made += made_folders(folder)
            fd, created = _open_lock(path)
            if fd is None:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise DataError(
                    f"{option} {folder}: another fsanet run holds {path} (it is writing there); wait for it to "
                    "end or choose another output"
                ) from None
            if _still_at(fd, path):
                break
            os.close(fd)  # locked a file its holder removed on release: take the one there now
        else:
            raise DataError(f"{option} {folder}: could not lock {path}; try again")
        try:
            yield folder
        finally:
            if created:
                path.unlink(missing_ok=True)  # while still holding it: no one else uses this file
            os.close(fd)
    finally:
        remove_empty(made)


def _open_lock(path: Path) -> tuple[int | None, bool]:
    """(descriptor, whether this run created the file); None when it vanished meanwhile.
    Never truncated, never a symlink's target."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666), True
    except FileExistsError:
        pass
    except FileNotFoundError:  # the folder was removed by the run that made it
        return None, False
    try:
        return os.open(path, flags), False
    except FileNotFoundError:
        return None, False


def _still_at(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
    except FileNotFoundError:
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
