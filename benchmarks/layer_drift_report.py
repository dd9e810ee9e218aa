"""The reports of `fsanet debug`: debug.json, debug.md (per layer in graph order) and debug.png."""

from __future__ import annotations

import json
from pathlib import Path

from fsanet.files import finite_or_none, write_text


def summary_lines(result: dict) -> list[str]:
    """The few lines a console shows: total drift, where the error jumps, the top contributors."""
    d = result["drift"]
    lines = [
        f"INT8 against float on {result['faces']} faces: drift {d['mean']:.4f} mean / {d['max']:.3f} max degrees",
        f"error jumps first at: {result['first_jump'] or '-'} (a node losing {result['jump_db']:.0f} dB or more of "
        f"SNR on top of what it receives); largest loss: {result['largest_loss'] or '-'}",
        f"layers quantized alone, everything else float ({result['alone_faces']} faces), most drift first:",
    ]
    lines += [
        f"  {c['node']} ({c['op_type']}): {c['mean']:.4f} mean / {c['max']:.3f} max" for c in result["top_contributors"]
    ]
    if result["unmatched_layers"]:
        lines.append(f"  not measured alone (no float counterpart): {', '.join(result['unmatched_layers'])}")
    return lines + recipe_lines(result)


def recipe_lines(result: dict) -> list[str]:
    """The search's answer: which layers to keep float for the drift limit, and the export
    command that makes that file (NNCF quantizes again with those layers ignored)."""
    recipe = result.get("recipe")
    if not recipe:
        return []
    steps = ", ".join(f"{t['float_layers']}: {t['drift_mean']:.4f}" for t in recipe["trajectory"])
    if recipe["float_layers"] is None:
        return [
            f"no recipe: with every measured layer float the drift still misses {recipe['max_drift']} "
            f"(layers float: drift mean {steps})"
        ]
    names = ",".join(recipe["float_layers"])
    return [
        f"layers to keep float for a mean drift of {recipe['max_drift']} degrees: {names or 'none'} "
        f"(layers float: drift mean {steps})",
        *([f"  fsanet export MODEL --to onnx-int8 --int8-float-layers {names}"] if names else []),
    ]


def _cell(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def markdown(result: dict) -> str:
    rows = [
        "| # | node | op | tensor | SNR dB | cosine | max abs err | lost dB | alone: drift mean / max deg |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k, r in enumerate(result["layers"]):
        a = r.get("alone_drift")
        rows.append(
            f"| {k} | {r['node']} | {r['op_type']} | {r['tensor']} | {_cell(r['snr_db'], '.1f')} | "
            f"{r['cosine']:.5f} | {r['max_abs']:.4g} | {_cell(r.get('lost_db'), '.1f')} | "
            + (f"{a['mean']:.4f} / {a['max']:.3f} |" if a else "- |")
        )
    return "\n".join(
        [
            "# fsanet debug: INT8 against float, layer by layer",
            "",
            *summary_lines(result),
            "",
            "Tensors the two graphs share, in the float graph's order. SNR: signal over error power of the "
            "INT8 tensor against the float one over all faces; lost dB: this node's output SNR below the "
            "worst of its inputs' (traced back through Q/DQ; the image and constants count as exact, "
            f"{100:.0f} dB); alone: the angles' drift when only this node's input quantizers are inserted into "
            "the float graph (not additive: errors of different layers partly cancel).",
            "",
            *rows,
            "",
            "![SNR and drift per layer](debug.png)",
            "",
        ]
    )


def plot(result: dict, path: Path) -> Path:
    from matplotlib.figure import Figure  # no pyplot: the caller's matplotlib backend stays as it is

    layers = result["layers"]
    fig = Figure(figsize=(max(8, 0.05 * len(layers)), 4.5))
    ax = fig.subplots()
    snr = [min(r["snr_db"], 100) for r in layers]
    ax.plot(range(len(layers)), snr, color="tab:blue", lw=1)
    ax.set_xlabel("tensor, in graph order")
    ax.set_ylabel("SNR of INT8 against float (dB)", color="tab:blue")
    bars = ax.twinx()
    idx = [k for k, r in enumerate(layers) if r.get("alone_drift")]
    bars.bar(idx, [layers[k]["alone_drift"]["mean"] for k in idx], color="tab:red", alpha=0.6, width=1.0)
    bars.set_ylabel("drift with this layer alone INT8 (deg, mean)", color="tab:red")
    names = [r["node"] for r in layers]
    if result["first_jump"] in names:
        ax.axvline(names.index(result["first_jump"]), color="k", ls="--", lw=0.8)
    ax.set_title(f"INT8 drift {result['drift']['mean']:.3f} deg mean; dashed: first jump")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_reports(result: dict, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "debug.json", json.dumps(finite_or_none(result), indent=2) + "\n")
    write_text(out / "debug.md", markdown(result))
    return {"json": out / "debug.json", "markdown": out / "debug.md", "plot": plot(result, out / "debug.png")}
