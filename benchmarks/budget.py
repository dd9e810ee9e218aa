"""The MAE budget: limits in a TOML file, checked against a benchmark's results.

```toml
[all]                       # limits for every artifact of the run
max_drift = 0.25            # mean |angle - reference angle|, degrees, on unlabelled faces
["fusion-int8.onnx"]        # limits for one artifact, by its name in the run
max_mae_increase = 0.2      # MAE above the reference artifact's MAE, degrees
max_p50_ratio = { "fusion.onnx" = 0.5 }   # batch-1 p50 over another artifact's, same run
max_p50_ratio_ci = { "fusion.onnx" = 0.5 }  # the same, failed only when its whole 95% interval is over
max_p50_loop_ratio = { "fusion.onnx" = 0.5 }  # the same in the loop (caches swept before each call)
max_instructions_ratio = { "fusion.onnx" = 0.5 }  # instructions per face (bench --instructions)
```
Unknown keys, and sections or ratio tables naming an artifact that is not in the run, are errors.
"""

from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10, the system Python of JetPack 6
    import tomli as tomllib
import math
from dataclasses import dataclass
from pathlib import Path

from fsanet.errors import DataError
from fsanet.files import read_bounded

# key -> (where in an artifact's results, what it means)
LIMITS = {
    "max_mae": ("mae.mean", "mean MAE against labels, degrees"),
    "max_mae_increase": ("mae_increase", "mean MAE minus the reference's, degrees"),
    "max_drift": ("drift.mean", "mean |angle - reference angle| on unlabelled faces, degrees"),
    "max_drift_max": ("drift.max", "max |angle - reference angle| on unlabelled faces, degrees"),
    "max_p50_ms": ("latency.compute.1.p50_ms", "batch-1 compute p50 (hot), ms"),
    "max_p99_ms": ("latency.compute.1.p99_ms", "batch-1 compute p99, ms"),
    "max_p50_loop_ms": ("latency.loop.1.p50_ms", "batch-1 p50 in the loop (caches swept before each call), ms"),
    "max_size_mb": ("size_mb", "file size, MB"),
    "max_p50_ratio": ("p50_ratio_to", "batch-1 p50 over each named artifact's, a table {artifact = limit}"),
    "max_p50_loop_ratio": (
        "loop_ratios.p50_ratio_to",
        "batch-1 p50 in the loop over each named artifact's in the loop, a table {artifact = limit}",
    ),
    "max_instructions_ratio": (
        "instructions_ratio_to",
        "instructions per face (valgrind, `bench --instructions`) over each named artifact's: a gate "
        "that the runner's neighbours cannot move",
    ),
    "max_p50_ratio_ci": (
        "p50_ratio_ci",
        "as max_p50_ratio, but broken only when the whole 95% interval of the ratio lies above the "
        "limit: a gate for noisy shared runners that fails when the ratio is confidently over",
    ),
}
RATIO = "max_p50_ratio"
RATIO_CI = "max_p50_ratio_ci"
RATIO_LOOP = "max_p50_loop_ratio"
RATIO_INSTR = "max_instructions_ratio"
RATIO_KEYS = (RATIO, RATIO_CI, RATIO_LOOP, RATIO_INSTR)
MAX_LIMIT = 1e15  # no limit of a budget (degrees, ms, MB, ratios) is anywhere near this


@dataclass(frozen=True)
class Violation:
    artifact: str
    metric: str
    limit: float | None
    measured: float | None
    detail: str = ""  # why a measurement is missing or not a number
    against: str = ""  # the other artifact of a ratio limit

    def __str__(self) -> str:
        if self.limit is None:  # a violation of no one limit: the artifact itself is broken
            return f"{self.artifact}: {self.detail}"
        if self.measured is not None and not math.isfinite(self.measured):
            return f"{self.artifact}: {self.metric} is {self.measured}: {self.detail or 'not a finite number'}"
        got = "not measured" if self.measured is None else f"{self.measured:.4g}"
        limit = "" if self.limit is None else f", limit {self.limit:g}"
        return f"{self.artifact}: {self.metric} = {got}{limit}" + (f" ({self.detail})" if self.detail else "")


def budget_path(name: str | Path) -> Path:
    """A budget file, or a budget shipped with the project by name (`default`)."""
    shipped = Path(__file__).resolve().parent.parent / "fsanet" / "budgets" / f"{name}.toml"
    if not Path(name).exists():
        from importlib.resources import files

        packaged = files("fsanet") / "budgets" / f"{name}.toml"
        if packaged.is_file():
            return Path(str(packaged))
        if shipped.is_file():
            return shipped
    return Path(name)


def load_budget(path: str | Path) -> dict[str, dict[str, float]]:
    path = budget_path(path)
    if not path.exists():
        raise DataError(f"{path}: no such budget file (give a TOML file or a shipped name: default, ports)")
    try:
        data = tomllib.loads(
            read_bounded(path, "budget: a TOML file or a shipped name (default, ports)").decode("utf-8")
        )
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file; a budget is TOML, like [all] max_drift = 0.25") from None
    except tomllib.TOMLDecodeError as e:
        raise DataError(f"{path}: not valid TOML ({e})") from e
    except RecursionError:  # arrays nested thousands deep: a budget has two levels
        raise DataError(
            f"{path}: not a budget: nested too deep; limits are numbers or {{ artifact = number }}"
        ) from None
    except OSError as e:
        raise DataError(f"{path}: cannot read the budget file ({e.strerror})") from e
    budget = {}
    for section, limits in data.items():
        if not isinstance(limits, dict):
            raise DataError(f"{path}: '{section}' must be a table like [all] or [\"model.onnx\"]")
        for key, value in limits.items():
            if key not in LIMITS:
                raise DataError(f"{path}: [{section}] unknown key '{key}'; known: {', '.join(LIMITS)}")
            if key in RATIO_KEYS:
                if not isinstance(value, dict) or not value:
                    raise DataError(f'{path}: [{section}] {key} must be a table like {{ "other.onnx" = 1.25 }}')
                for other, limit in value.items():
                    _number(path, section, f"{key}.{other}", limit)
            else:
                _number(path, section, key, value)
        budget[section] = {k: _floats(v) for k, v in limits.items()}
    return budget


def _floats(value):
    return {o: float(x) for o, x in value.items()} if isinstance(value, dict) else float(value)


def _number(path, section: str, key: str, value) -> None:
    """A limit is a finite number >= 0 (a ratio > 0): `nan` would switch its own check off."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise DataError(f"{path}: [{section}] {key} must be a number, got {str(value)[:40]!r}")
    if isinstance(value, int) and abs(value) > MAX_LIMIT:  # a float() of a 400-digit integer overflows
        raise DataError(
            f"{path}: [{section}] {key} must be at most {MAX_LIMIT:g}, got a {len(str(value))}-digit integer"
        )
    if not math.isfinite(value):
        raise DataError(f"{path}: [{section}] {key} must be a finite number, got {value}")
    ratio = key.split(".")[0] in RATIO_KEYS
    if value < 0 or (ratio and value == 0):
        kind = "positive" if ratio else "zero or more"
        raise DataError(f"{path}: [{section}] {key} must be {kind}, got {value}")


def _lookup(results: dict, dotted: str):
    node = results
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def check_names(budget: dict[str, dict[str, float]], names, source: str = "budget") -> None:
    """Every section and ratio table of the budget names an artifact of the run (checked
    before the run, so a typo fails at once)."""
    names = sorted(names)
    unknown = set(budget) - {"all"} - set(names)
    if unknown:
        raise DataError(f"{source}: sections {sorted(unknown)} name no artifact of this run ({names})")
    for key in RATIO_KEYS:
        stray = {o for limits in budget.values() for o in limits.get(key, {})} - set(names)
        if stray:
            raise DataError(f"{source}: {key} names {sorted(stray)}, not in this run ({names})")


def _not_finite(results: dict) -> str:
    """Why a metric is not a number: the count of faces with non-finite angles, where known."""
    bad = results.get("non_finite") or {}
    if bad.get("faces"):
        return f"the model produced non-finite angles on {bad['faces']} of {bad['of']} faces"
    return "the measurement is not a finite number"


def check(budget: dict[str, dict[str, float]], artifacts: dict[str, dict], source: str = "budget") -> list[Violation]:
    """Every limit that an artifact's results break, that the run did not measure, or whose
    measurement is not a finite number; and every artifact that produced non-finite angles."""
    check_names(budget, artifacts, source)
    violations = []
    for name, results in artifacts.items():
        bad = results.get("non_finite") or {}
        if bad.get("faces"):  # a broken model fails any budget, whatever its limits say
            detail = f"the model produced non-finite angles on {bad['faces']} of {bad['of']} faces"
            violations.append(Violation(name, "angles", None, None, detail))
        limits = budget.get("all", {}) | budget.get(name, {})
        violations += _ratio_violations(budget, name, results)
        for key, limit in limits.items():
            if key in RATIO_KEYS:
                continue
            measured = _lookup(results, LIMITS[key][0])
            if results.get("is_reference") and key in ("max_drift", "max_drift_max", "max_mae_increase"):
                continue  # the reference is the yardstick of these, not subject to them
            if _breaks(measured, limit):
                metric = LIMITS[key][0]
                detail = _not_finite(results) if measured is not None and not math.isfinite(measured) else ""
                violations.append(Violation(name, metric, limit, measured, detail))
    return violations


def _ratio_violations(budget: dict, name: str, results: dict) -> list[Violation]:
    """max_p50_ratio judged on the point estimate, max_p50_ratio_ci on the interval's low end;
    both print the 95% interval where the run measured one."""
    out = []
    for key in RATIO_KEYS:
        table = budget.get("all", {}).get(key, {}) | budget.get(name, {}).get(key, {})
        for other, limit in table.items():
            if other == name:
                continue
            if key == RATIO_INSTR:
                measured = results.get("instructions_ratio_to", {}).get(other)
                if _breaks(measured, limit):
                    out.append(Violation(name, f"instructions ratio to {other}", limit, measured, against=other))
                continue
            state = results.get("loop_ratios", {}) if key == RATIO_LOOP else results
            point = state.get("p50_ratio_to", {}).get(other, {}).get("1")
            ci = state.get("p50_ratio_ci", {}).get(other, {}).get("1")
            detail = f"95% interval {ci['low']:.3g}-{ci['high']:.3g}" if ci else ""
            measured = ci["low"] if key == RATIO_CI and ci else (None if key == RATIO_CI else point)
            metric = f"p50 ratio to {other} (batch 1" + (", in the loop)" if key == RATIO_LOOP else ")")
            metric += ", low end of its 95% interval" if key == RATIO_CI else ""
            if _breaks(measured, limit):
                out.append(Violation(name, metric, limit, measured, detail, against=other))
    return out


def _breaks(measured, limit: float) -> bool:
    """Not measured, not a finite number, or over the limit (`nan > limit` alone is False)."""
    return measured is None or not math.isfinite(measured) or measured > limit
