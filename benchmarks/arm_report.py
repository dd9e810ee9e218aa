"""The Markdown page of `fsanet arm`: one drift table over x86 and every emulated CPU model,
then what each machine and runtime said of its instruction set and kernels."""

from __future__ import annotations

HEAD = (
    "| machine | artifact | precision | faces | drift vs x86 float ONNX, mean / max | gap to x86 (mean drift) "
    "| max \\|Arm - x86\\| same file | MAE mean | verdict |"
)
RULE = "|---|---|---|---|---|---|---|---|---|"
NOTE = (
    "Drift in degrees (mean |angle - angle of the float ONNX on x86| over yaw, pitch, roll). No latency "
    "is reported: qemu translates every instruction, so emulated time says nothing about a device."
)


def markdown(report: dict) -> str:
    cfg, emu = report["config"], report["emulator"]
    lines = [
        "# fsanet arm: drift on emulated Arm CPU models",
        "",
        f"Golden set of the kit (`fsanet bundle`, checked by `fsanet check` on each CPU model): {report['faces']}. "
        f"Reference: `{cfg['reference']}` on x86. Budget: `{cfg['budget']}`.",
        f"Emulator: {emu['qemu']}; userland {emu['userland']}; wheels {', '.join(emu['wheels'])}.",
        f"x86: {_machine_line(report['x86']['machine'])}",
        "",
        HEAD,
        RULE,
    ]
    lines += _rows("x86 (here)", report["x86"]["artifacts"], report["violations"], None)
    for cpu, section in report["arm"].items():
        lines += _rows(cpu, section["artifacts"], report["violations"], cpu)
    lines += ["", NOTE, "", f"**Verdict: {report['verdict']}**", ""]
    lines += [f"- {v}" for v in report["violations"]] or ["- every limit held"]
    if report.get("not_judged"):
        lines += ["", "Not judged under emulation: " + "; ".join(report["not_judged"]) + "."]
    lines += ["", "## What each emulated machine and runtime said", ""]
    for cpu, section in report["arm"].items():
        lines += _machine_section(cpu, section)
    return "\n".join(lines) + "\n"


def _rows(machine: str, artifacts: dict, violations: list[str], cpu: str | None) -> list[str]:
    out = []
    for name, r in artifacts.items():
        d = r["drift"]
        gap = "-" if cpu is None else f"{r['gap_to_x86_drift']:+.4f}"
        vs = "-" if cpu is None else f"{r['vs_x86_same_file']['max']:.2g}"
        mae = f"{r['mae']['mean']:.3f}" if "mae" in r else "-"
        verdict = "-" if cpu is None else ("FAIL" if any(v.startswith(f"{cpu}: {name}:") for v in violations) else "ok")
        out.append(
            f"| {machine} | `{name}` | {r['precision']} | {r['faces']} | {d['mean']:.4f} / {d['max']:.3f} "
            f"| {gap} | {vs} | {mae} | {verdict} |"
        )
    return out


def _machine_line(fp: dict) -> str:
    isa = " ".join(fp.get("isa") or []) or "none of the listed"
    part = f", CPU part {fp['cpu_part']}" if fp.get("cpu_part") else ""
    return f"{fp['cpu']}{part} ({fp['arch']}; ISA the kernels dispatch on: {isa}; Python {fp['python']})"


def _machine_section(cpu: str, section: dict) -> list[str]:
    out = [f"**{cpu}** ({section['about']}): {_machine_line(section['machine'])}."]
    for name, r in section["artifacts"].items():
        line = f"- `{name}`: {r['executes_on']}"
        if r.get("kernels"):
            line += "; kernels (op type: nodes) " + "; ".join(
                f"{provider}: " + ", ".join(f"{op} {n}" for op, n in ops.items())
                for provider, ops in r["kernels"].items()
            )
        out.append(line)
    said = section.get("said") or []
    out += [f"- the runtimes printed: {' / '.join(said)}" if said else "- the runtimes printed nothing", ""]
    return out
