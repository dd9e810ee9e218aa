"""Which pip extra installs a missing library, read from the package's own metadata (the
extras in pyproject.toml are the one list; nothing here repeats them)."""

from __future__ import annotations

import re
from functools import cache

DIST = "fsanet-edge"
# import names whose distribution is named otherwise (the rest: '_' -> '-')
DISTRIBUTIONS = {"cv2": "opencv-python-headless", "cuda": "cuda-python"}
# the extra a command's own install note names, when it holds the library
COMMAND_EXTRA = {
    "bench": "bench",
    "profile": "bench",
    "debug": "bench",
    "export": "export",
    "train": "train",
    "import-keras": "torch",
}
UMBRELLAS = {"dev", "all"}


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


@cache
def _extras() -> dict[str, tuple[set[str], set[str]]]:
    """extra -> (distributions it names, other extras of this package it includes)."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        lines = requires(DIST) or []
    except PackageNotFoundError:  # running from a source tree that was never installed
        return {}
    out: dict[str, tuple[set[str], set[str]]] = {}
    for line in lines:
        found = re.search(r"""extra\s*==\s*["']([^"']+)["']""", line)
        if not found:
            continue
        dists, includes = out.setdefault(found.group(1), (set(), set()))
        req = re.match(r"\s*([A-Za-z0-9_.-]+)(\[([^\]]*)\])?", line)
        if _name(req.group(1)) == DIST:
            includes.update(e.strip() for e in (req.group(3) or "").split(","))
        else:
            dists.add(_name(req.group(1)))
    return out


def _closure(extra: str, seen: frozenset = frozenset()) -> set[str]:
    dists, includes = _extras().get(extra, (set(), set()))
    out = set(dists)
    for inc in includes - seen:
        out |= _closure(inc, seen | {extra})
    return out


def extra_for(module: str | None, command: str | None = None) -> str | None:
    """The extra to install for a missing import (`module`, dotted or not); None when no
    extra holds it (a core dependency or a bug, not an optional library)."""
    root = (module or "").partition(".")[0]
    if not root:
        return None
    dist = _name(DISTRIBUTIONS.get(root, root))
    candidates = {e: _closure(e) for e in _extras() if e not in UMBRELLAS}
    holding = {e: c for e, c in candidates.items() if dist in c}
    if not holding:
        return None
    preferred = COMMAND_EXTRA.get(command or "")
    if preferred in holding:
        return preferred
    return min(holding, key=lambda e: (len(holding[e]), e))
