"""check.json (machines) and check.md (people) of `fsanet check`; PNG plots where matplotlib is
installed (a runtime-only device has none: the reports say so)."""

from __future__ import annotations

from pathlib import Path

from fsanet.files import json_text, write_text
from fsanet.machine import describe

JSON, MARKDOWN = "check.json", "check.md"


def _f(v, fmt="{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def table(result: dict) -> list[str]:
    rows = [
        "| artifact | runtime | precision | verdict | drift mean / max, deg | vs kit machine, deg | MAE mean, deg "
        "| p50 ms | p99 ms | in-loop p50 ms | size MB |",
        "|" + "---|" * 11,
    ]
    for name, r in result["artifacts"].items():
        d, h, m = r["drift"], r.get("drift_to_host"), r.get("mae")
        lat = r.get("latency", {})
        hot, loop = lat.get("compute", {}).get("1", {}), lat.get("loop", {}).get("1", {})
        cells = [
            name + (" (golden)" if r.get("golden_source") else ""),
            r["backend"],
            r["precision"],
            r["verdict"],
            f"{_f(d['mean'], '{:.4f}')} / {_f(d['max'], '{:.4f}')}",
            f"{_f(h['mean'], '{:.4f}')} / {_f(h['max'], '{:.4f}')}" if h else "-",
            _f(m and m["mean"], "{:.2f}"),
            _f(hot.get("p50_ms")),
            _f(hot.get("p99_ms")),
            _f(loop.get("p50_ms")),
            _f(r["size_mb"], "{:.2f}"),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    for name, s in result["skipped"].items():
        rows.append(f"| {name} | {s['backend']} | - | SKIPPED | - | - | - | - | - | - | - |")
    for name in result["errors"]:
        rows.append(f"| {name} | - | - | ERROR | - | - | - | - | - | - | - |")
    return rows


def _latency_line(result: dict) -> str:
    c = result["config"]
    if not c["latency"]:
        return "Latency: not measured (--no-latency); no limit on it is judged."
    return (
        f"Latency: batch 1, {c['threads']} thread(s), after {c['warmup']} warm-up calls; hot: {c['hot_rounds']} "
        f"rounds of {c['hot_length']} consecutive calls; in the loop: {c['rounds']} rounds of {c['round_runs']} "
        f"calls, each after an untimed {c['sweep_bytes'] / 2**20:.1f} MiB memory write (L2 + L3); the artifacts "
        "take turns round by round."
    )


def _recommendation(result: dict) -> list[str]:
    rec = result["recommended"]
    if rec is None:
        why = "latency not measured" if not result["config"]["latency"] else "no artifact holds the budget here"
        return [f"Recommended for this device: none ({why})."]
    return [
        f"Recommended for this device: **{rec['artifact']}** ({rec['backend']}, {rec['precision']}): "
        f"{rec['p50_ms']:.3f} ms p50 hot, {rec['p50_loop_ms']:.3f} ms in the loop, drift {rec['drift_mean']:.4f} "
        "deg: the fastest artifact that holds the budget here."
    ]


def markdown(result: dict) -> str:
    b, m = result["bundle"], result["machine"]
    g = b["golden"]
    lines = [
        f"# fsanet check: {b['name']}",
        "",
        f"Kit: {b['name']}, made {b['created']} on {b['built_on']}; sha256 of its {b['files_verified']} files "
        "verified.",
        f"Device: {describe(m)}.",
        f"Golden set: {g['description']}; drift against the angles of {b['reference']} on the kit's machine; "
        f"labels: {'yes' if g['labelled'] else 'no (no MAE)'}.",
        _latency_line(result),
        *(f"**Warning: {w}** (the run may have been throttled)." for w in m.get("warnings", [])),
        "",
        *table(result),
        "",
    ]
    for name, s in result["skipped"].items():
        lines.append(f"- skipped {name}: {s['reason']}")
    for name, e in result["errors"].items():
        lines.append(f"- error {name}: {e}")
    for note in result["not_judged"]:
        lines.append(f"- not judged: {note}")
    if result["built"]:
        lines.append(f"- built here: {', '.join(result['built'])}")
    verdict = result["verdict"]
    lines += ["", f"verdict: {verdict}" + (" (every limit of the kit's budget holds)" if verdict == "PASS" else "")]
    lines += [f"  - {v}" for v in result["violation_lines"]]
    lines += ["", *_recommendation(result), ""]
    if result.get("plots"):
        lines += [" ".join(f"![{Path(p).stem}]({Path(p).name})" for p in result["plots"]), ""]
    return "\n".join(lines)


def _plots(result: dict, out: Path) -> list[str]:
    """latency.png and errors.png (fsanet.benchmarks.report.plot) where matplotlib is installed."""
    if not result["config"]["latency"] or not result["artifacts"]:
        return []
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return []
    from fsanet.benchmarks.report import plot

    return [str(p) for p in plot({"artifacts": result["artifacts"], "config": {"batches": [1]}}, out)]


def write(result: dict, out: str | Path) -> list[str]:
    """Write the plots, check.md and check.json into `out`; returns the files' names."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result["plots"] = [Path(p).name for p in _plots(result, out)]
    files = [JSON, MARKDOWN, *result["plots"]]
    result["files"] = files
    write_text(out / MARKDOWN, markdown(result))
    write_text(out / JSON, json_text(result))
    return files


def console(result: dict, out: Path) -> list[str]:
    """What `fsanet check` prints."""
    lines = [*table(result), ""]
    lines += [f"skipped {n}: {s['reason']}" for n, s in result["skipped"].items()]
    lines += [f"error {n}: {e}" for n, e in result["errors"].items()]
    lines += [f"not judged: {n}" for n in result["not_judged"]]
    lines += [f"verdict: {result['verdict']}", *(f"  - {v}" for v in result["violation_lines"])]
    lines += [*_recommendation(result), f"reports: {out / MARKDOWN}, {out / JSON}"]
    return lines
