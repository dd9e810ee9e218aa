"""Reports of a benchmark run: JSON for machines, Markdown for people, PNG plots."""

from __future__ import annotations

from pathlib import Path

from fsanet.benchmarks.footprint import cache_lines, why_slower

from fsanet.files import json_text, write_text
from fsanet.machine import describe as describe_machine


def _f(v, fmt="{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def markdown_table(result: dict) -> str:
    batches = [str(b) for b in result["config"]["batches"]]
    big = batches[-1]
    head = (
        f"| artifact | precision | size MB | weights MB | MFLOP/face | p50 ms (b1) | p99 ms (b1) | in-loop p50 ms (b1) "
        f"| ms/face (b{big}) | e2e p50 ms | GFLOP/s | p50 / {result['baseline']} | MAE y/p/r (mean) | drift mean/max "
        "| peak MB |"
    )
    rows = [head, "|" + "---|" * 15]
    for name, r in result["artifacts"].items():
        c = r["latency"]["compute"]
        m = r.get("mae")
        d = r.get("drift")
        e2e = r["latency"].get("end_to_end", {}).get("1", {}).get("p50_ms")
        rows.append(
            "| "
            + " | ".join(
                [
                    name,
                    r["precision"],
                    _f(r["size_mb"]),
                    _f(r.get("weights_mb")),
                    _f(r["flops_per_face"] and r["flops_per_face"] / 1e6, "{:.1f}"),
                    _f(c[batches[0]]["p50_ms"], "{:.3f}"),
                    _f(c[batches[0]]["p99_ms"], "{:.3f}"),
                    _f(r["latency"].get("loop", {}).get(batches[0], {}).get("p50_ms"), "{:.3f}"),
                    _f(c[big]["p50_ms"] / int(big), "{:.3f}"),
                    _f(e2e, "{:.3f}"),
                    _gflops(r),
                    _f(r["p50_ratio"][batches[0]]) + "x",
                    f"{m['yaw']:.2f}/{m['pitch']:.2f}/{m['roll']:.2f} ({m['mean']:.2f})" if m else "-",
                    f"{d['mean']:.4f}/{d['max']:.4f}" if d else "-",
                    _f(r.get("memory", {}).get("model_mb"), "{:.1f}"),
                ]
            )
            + " |"
        )
    return "\n".join(rows)


def _gflops(r: dict) -> str:
    if r.get("gflops_per_s") is None:
        return "-"
    share = f" ({r['fraction_of_peak']:.0%})" if r.get("fraction_of_peak") is not None else ""
    return f"{r['gflops_per_s']:.1f}{share}"


def ratio_matrix(result: dict, batch: str, state: str = "hot") -> str:
    """p50 of the row's artifact divided by the column's, at one batch size; in square brackets
    its 95% bootstrap interval, in round brackets the 10th-90th percentile round by round."""
    names = list(result["artifacts"])
    title = f"p50 ratio, batch {batch}" + (", in the loop" if state == "loop" else "") + " (row / column)"
    rows = [f"| {title} | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for n in names:
        r = result["artifacts"][n] if state == "hot" else result["artifacts"][n].get("loop_ratios", {})
        if "p50_ratio_to" not in r:
            continue
        cells = []
        for o in names:
            cell = f"{r['p50_ratio_to'][o][batch]:.2f}"
            ci = r.get("p50_ratio_ci", {}).get(o, {}).get(batch)
            spread = r.get("p50_ratio_rounds", {}).get(o, {}).get(batch)
            if o != n and ci:
                cell += f" [{ci['low']:.2f}-{ci['high']:.2f}]"
            if o != n and spread:
                cell += f" ({spread['p10']:.2f}-{spread['p90']:.2f})"
            cells.append(cell)
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _peak_line(result: dict) -> str:
    peak = result.get("peak")
    if not peak:
        return "Peak FP32 GFLOP/s: not given (--peak-gflops N or measure)."
    return f"Peak FP32: {peak['gflops_per_s']:.1f} GFLOP/s ({peak['source']}); GFLOP/s column: share of it in brackets."


def instruction_lines(result: dict) -> list[str]:
    """Instructions per face where `--instructions` counted them, and their ratios."""
    counted = {n: r["instructions"] for n, r in result["artifacts"].items() if r.get("instructions")}
    if not counted:
        return []
    first = next(iter(counted.values()))
    how = f"median of {first['runs']} inferences, each counted alone, after {first.get('warmup', 1)} warm-up"
    lines = [f"Instructions per face ({first['method']}; {how}):"]
    for name, c in counted.items():
        ratios = result["artifacts"][name].get("instructions_ratio_to", {})
        text = ", ".join(f"{ratios[o]:.3f}x {o}" for o in counted if o != name and o in ratios)
        lines.append(f"- {name}: {c['per_face'] / 1e6:.2f} M" + (f" ({text})" if text else ""))
    return [*lines, ""]


def recommendation(result: dict, violations) -> list[str]:
    """Per runtime, the fastest artifact on this machine among those that hold the budget (all
    measured ones without a budget), hot and in the loop: the answer to "which file do I ship
    on this machine", with the figures that decide it."""
    batch = str(result["config"]["batches"][0])
    failed = {v.artifact for v in violations or []}
    by_backend: dict[str, list] = {}
    for name, r in result["artifacts"].items():
        if name in failed or (r.get("non_finite") or {}).get("faces"):
            continue
        by_backend.setdefault(r["backend"], []).append((name, r))
    scope = "within the budget" if violations is not None else "measured (no budget given)"
    lines = [f"fastest on this machine ({result['machine']['cpu']}), batch {batch}, {scope}:"]
    for backend, rows in sorted(by_backend.items()):
        hot = min(rows, key=lambda nr: nr[1]["latency"]["compute"][batch]["p50_ms"])
        loop = min(rows, key=lambda nr: nr[1]["latency"]["loop"][batch]["p50_ms"])
        h, lp = hot[1]["latency"], loop[1]["latency"]
        text = f"  - {backend}: {hot[0]} hot ({h['compute'][batch]['p50_ms']:.3f} ms p50, {hot[1]['precision']})"
        if loop[0] == hot[0]:
            text += f" and in the loop ({lp['loop'][batch]['p50_ms']:.3f} ms)"
        else:
            text += f"; in the loop {loop[0]} ({lp['loop'][batch]['p50_ms']:.3f} ms, {loop[1]['precision']})"
        lines.append(text + f", of {len(rows)}")
    if len(lines) == 1:
        lines.append("  - none: no artifact holds the budget")
    return lines


def verdict_lines(violations, result: dict | None = None) -> list[str]:
    """The budget's verdict; `violations` None: no budget was given (then artifacts that
    produced non-finite angles are still named, as warnings)."""
    if violations is None:
        broken = [
            f"warning: {name} produced non-finite angles on {r['non_finite']['faces']} of {r['non_finite']['of']} faces"
            for name, r in (result or {}).get("artifacts", {}).items()
            if (r.get("non_finite") or {}).get("faces")
        ]
        return ["verdict: none (no --budget given)", *broken]
    if not violations:
        return ["verdict: PASS (every budget limit holds)"]
    lines = ["verdict: FAIL"]
    for v in violations:
        lines.append(f"  - {v}")
        why = why_slower(result, v.artifact, v.against) if result and v.against and "p50" in v.metric else ""
        if why:
            lines.append(f"    why: {why}")
    return lines


def _processes_phrase(cfg: dict) -> str:
    n = cfg.get("processes", 1)
    return f"split over {n} fresh processes run one after another; " if n > 1 else ""


def _stopping_phrase(cfg: dict) -> str:
    if not cfg.get("p50_within"):
        return ""
    done = ", ".join(f"batch {b}: {n['hot']} hot + {n['loop']} in-loop" for b, n in cfg["rounds_per_batch"].items())
    return (
        f"each phase stopped once every p50's 95% interval was within +-{cfg['p50_within']:.0%} or at "
        f"{cfg['runs']} runs per state ({done} rounds); "
    )


def _interval_kind(cfg: dict) -> str:
    n = cfg.get("processes", 1)
    if n > 1:
        return (
            f"Student's t over the ratios of {n} fresh processes run one after another: what a rerun "
            "changes, the allocator's placement of the weights and the machine's minutes, is inside it"
        )
    return (
        "a paired bootstrap over the interleaved rounds: how far the ratio could move in a repeat of "
        "this process; it leaves out what differs between processes, see bench --processes"
    )


def write_markdown(result: dict, violations, path: Path) -> None:
    cfg = result["config"]
    lines = [
        "# fsanet bench",
        "",
        f"Backend threads: {cfg['threads']}; batches {cfg['batches']}; one phase per batch size after "
        f"{cfg['warmup']} warm-up runs; hot: {cfg['hot_rounds']} interleaved rounds of {cfg['hot_length']} "
        f"consecutive calls; in the loop: {cfg['rounds']} interleaved rounds of {cfg['round_runs']} calls, each "
        f"after an untimed {cfg['sweep_bytes'] / 2**20:.1f} MiB memory write (this machine's L2 + L3); "
        f"{cfg['rewarm']} untimed calls after each switch; every call takes the next input batch; "
        + _processes_phrase(cfg)
        + _stopping_phrase(cfg)
        + f"provider {cfg['provider']}; "
        f"PyTorch device {cfg.get('device', 'cpu')}; "
        f"denormals as zero: {'on' if cfg.get('denormals_as_zero') else 'off'}.",
        f"Labelled data: {result['data'] or '-'}; unlabelled faces: {result['faces'] or '-'}; "
        f"drift reference: {result['reference'] or '-'}.",
        f"Machine: {describe_machine(result['machine'])}.",
        "Runs on: "
        + "; ".join(f"{n}: {r.get('executes_on', r['backend'])}" for n, r in result["artifacts"].items())
        + ".",
        *(f"**Warning: {w}** (the run may have been throttled)." for w in result["machine"].get("warnings", [])),
        _peak_line(result),
        "",
        markdown_table(result),
        "",
        *(ratio_matrix(result, str(b)) + "\n" for b in cfg["batches"]),
        ratio_matrix(result, str(cfg["batches"][0]), "loop") + "\n",
        "p50 ratios are measured in this run: the table's column against the first model, the "
        f"matrices between every pair; in square brackets its 95% interval ({_interval_kind(cfg)}), "
        "in round brackets the 10th-90th percentile of the ratio taken round by round (how steady it was). "
        "e2e: photo + landmarks -> angles for one face (crop, input format, inference).",
        "",
        *instruction_lines(result),
        *cache_lines(result),
        *verdict_lines(violations, result),
        "",
        *recommendation(result, violations),
        "",
        "![latency](latency.png) ![errors](errors.png)",
        "",
    ]
    write_text(path, "\n".join(lines))


def plot(result: dict, out: Path) -> list[Path]:
    # Figure without pyplot: no GUI backend is chosen, so the caller's matplotlib state is untouched
    from matplotlib.figure import Figure

    names = list(result["artifacts"])
    paths = []
    fig = Figure(figsize=(max(6, 1.6 * len(names)), 4))
    ax = fig.subplots()
    samples = [result["artifacts"][n]["latency_samples_ms"] for n in names]
    ax.boxplot(samples, showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"ms per call, batch {result['config']['batches'][0]}")
    ax.set_title("compute latency (box: quartiles, whiskers: 1.5 IQR)")
    fig.tight_layout()
    paths.append(out / "latency.png")
    fig.savefig(paths[-1], dpi=120)

    fig = Figure(figsize=(max(6, 1.6 * len(names)), 4))
    ax = fig.subplots()
    width = 0.8 / 4
    for k, key in enumerate(("yaw", "pitch", "roll")):
        vals = [(result["artifacts"][n].get("mae") or {}).get(key, 0) for n in names]
        ax.bar([i + k * width for i in range(len(names))], vals, width, label=f"MAE {key}")
    drifts = [(result["artifacts"][n].get("drift") or {}).get("mean", 0) for n in names]
    ax.bar([i + 3 * width for i in range(len(names))], drifts, width, label="drift (mean)")
    ax.set_xticks([i + 1.5 * width for i in range(len(names))], names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("degrees")
    ax.set_title("error per angle against labels, and drift against the reference")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "errors.png")
    fig.savefig(paths[-1], dpi=120)
    return paths


def write_reports(result: dict, violations, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    full = dict(
        result,
        violations=[
            {
                "artifact": v.artifact,
                "metric": v.metric,
                "limit": v.limit,
                "measured": v.measured,
                "detail": v.detail,
                "why": why_slower(result, v.artifact, v.against) if v.against and "p50" in v.metric else "",
            }
            for v in violations or []
        ],
    )
    write_text(out / "report.json", json_text(full))
    write_markdown(result, violations, out / "report.md")
    plots = plot(result, out)
    return {"json": out / "report.json", "markdown": out / "report.md", "plots": plots}
