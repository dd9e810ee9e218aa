"""The report of an INT8 scope search (`fsanet export --int8-objective`): `<file>.scopes.md`
(the Pareto table of the machine it was timed on) and `<file>.scopes.json`, beside the file."""

from __future__ import annotations

import json
from pathlib import Path


def report_paths(output: Path) -> tuple[Path, Path]:
    """`<file>.scopes.md` and `.json` beside the written file (ONNX and TFLite apart)."""
    return output.with_name(f"{output.name}.scopes.md"), output.with_name(f"{output.name}.scopes.json")


def markdown(search: dict, output_name: str) -> str:
    from fsanet.machine import describe

    f = search["float"]
    lines = [
        f"# INT8 scopes of {output_name}",
        "",
        f"Objective: {search['objective']}, within a mean drift of {search['max_drift_deg']} degrees from the float "
        f"file on {search['count']} faces ({search['faces']}). Timed at batch 1, one thread, all candidates within "
        f"the budget and the float file interleaved in one run ({f['hot_rounds']} hot rounds): {f['file']} "
        f"{f['p50_hot_ms']:.3f} ms hot, {f['p50_loop_ms']:.3f} ms in the loop. Drift against {search['reference']}.",
        f"Machine: {describe(search['machine'])}.",
        "",
        "| rank | scope | float layers | drift mean / max (deg) | size (MB) | p50 hot (ms) | hot / float [95%] "
        "| in the loop / float | Pareto |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(search["candidates"], key=_order):
        lines.append(_row(r))
    chosen = next(r for r in search["candidates"] if r["key"] == search["chosen"])
    lines += ["", f"Chosen: {chosen['scope']} (`{chosen['key']}`). Over budget: not timed."]
    return "\n".join(lines) + "\n"


def _order(r: dict):
    return (r["rank"] is None, r["rank"] or 0, not r["within_budget"], r.get("p50_hot_ms") or 0.0)


def _row(r: dict) -> str:
    timed = r.get("p50_hot_ms") is not None
    ci = r.get("p50_hot_over_float_ci") or [None, None]
    hot = f"{r['p50_hot_over_float']:.2f}x [{ci[0]:.2f}-{ci[1]:.2f}]" if timed else "-"
    cells = [
        str(r["rank"] or "-"),
        r["scope"] + ("" if r["within_budget"] else " (over budget)"),
        "-" if r["float_layers"] is None else str(r["float_layers"]),
        f"{r['drift_mean_deg']:.3f} / {r['drift_max_deg']:.2f}",
        f"{r['size_bytes'] / 1e6:.2f}",
        f"{r['p50_hot_ms']:.3f}" if timed else "-",
        hot,
        f"{r['p50_loop_over_float']:.2f}x" if timed else "-",
        "yes" if r["pareto"] else "",
    ]
    return "| " + " | ".join(cells) + " |"


def write_report(search: dict, output: Path) -> tuple[Path, Path]:
    from fsanet.files import atomic_write

    md, js = report_paths(Path(output))
    atomic_write(js, lambda tmp: Path(tmp).write_text(json.dumps(search, indent=1) + "\n"))
    atomic_write(md, lambda tmp: Path(tmp).write_text(markdown(search, Path(output).name)))
    return md, js
