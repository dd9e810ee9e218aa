"""The verdict of a check: the kit's budget, applied to what this device could measure.

A device runs only the artifacts whose runtime it has, and a check measures no instruction
counts (valgrind) and, with --no-latency, no latency: limits on what was not measured here, and
sections naming artifacts that did not run, are left out of the verdict and listed as not
judged, each with the reason. Everything else is `fsanet.benchmarks.budget.check`.
"""

from __future__ import annotations

from fsanet.benchmarks.budget import RATIO_INSTR, RATIO_KEYS, check, load_budget

LATENCY_KEYS = ("max_p50_ms", "max_p99_ms", "max_p50_loop_ms", "max_p50_ratio", "max_p50_ratio_ci")
LABEL_KEYS = ("max_mae", "max_mae_increase")


def _why_absent(name: str, skipped: dict, errors: dict) -> str:
    if name in skipped:
        return f"{name} was skipped here ({skipped[name]['install']} runs it)"
    if name in errors:
        return f"{name} failed to run here"
    return f"{name} is not in this kit"


def applicable(budget: dict, ran: set[str], skipped: dict, errors: dict, latency: bool, labelled: bool):
    """(the budget limited to what this check measured, notes on each limit left out)."""
    out, notes = {}, []
    for section, limits in budget.items():
        if section != "all" and section not in ran:
            notes.append(f"[{section}]: {_why_absent(section, skipped, errors)}")
            continue
        kept = {}
        for key, value in limits.items():
            if key == RATIO_INSTR:
                notes.append(f"[{section}] {key}: instructions are counted by `fsanet bench --instructions`, not here")
            elif key in LATENCY_KEYS and not latency:
                notes.append(f"[{section}] {key}: latency not measured (--no-latency)")
            elif key in LABEL_KEYS and not labelled:
                notes.append(f"[{section}] {key}: the golden set has no labels")
            elif key in RATIO_KEYS:
                table = {o: v for o, v in value.items() if o in ran}
                notes += [f"[{section}] {key} to {o}: {_why_absent(o, skipped, errors)}" for o in value if o not in ran]
                if table:
                    kept[key] = table
            else:
                kept[key] = value
        if kept:
            out[section] = kept
    return out, notes


def recommend(results: dict, failed: set[str]) -> dict | None:
    """The fastest artifact (batch-1 hot p50) that holds the budget here; None without latency."""
    ok = {n: r for n, r in results.items() if n not in failed and "latency" in r}
    if not ok:
        return None
    name = min(ok, key=lambda n: ok[n]["latency"]["compute"]["1"]["p50_ms"])
    r = ok[name]
    return {
        "artifact": name,
        "backend": r["backend"],
        "precision": r["precision"],
        "p50_ms": r["latency"]["compute"]["1"]["p50_ms"],
        "p50_loop_ms": r["latency"]["loop"]["1"]["p50_ms"],
        "drift_mean": r["drift"]["mean"],
    }


def judge(bundle, results: dict, skipped: dict, errors: dict, measured_latency: bool, labelled: bool) -> dict:
    """violations, per-artifact verdicts, limits not judged, overall verdict, recommendation."""
    budget = load_budget(bundle.budget_path())
    limited, notes = applicable(budget, set(results), skipped, errors, measured_latency, labelled)
    violations = check(limited, results, str(bundle.budget_path()))
    failed = {v.artifact for v in violations}
    for name, r in results.items():
        r["violations"] = [str(v) for v in violations if v.artifact == name]
        r["verdict"] = "FAIL" if name in failed else "PASS"
    overall = "ERROR" if errors else "FAIL" if violations else "PASS"
    return {
        "budget": {"source": bundle.manifest.get("budget", {}).get("source"), "limits": limited},
        "violations": [
            {"artifact": v.artifact, "metric": v.metric, "limit": v.limit, "measured": v.measured, "detail": v.detail}
            for v in violations
        ],
        "violation_lines": [str(v) for v in violations],
        "not_judged": notes,
        "verdict": overall,
        "recommended": recommend(results, failed),
    }
