"""`fsanet bundle ARTIFACT... -o DIR`: one self-contained folder that proves a device.

The folder (layout in `kit/layout.py`) holds the artifacts with their manifests, a golden set of
crops (synthetic heads by default, so the kit can be shared; `--faces` for your own), the float
reference's angles on them and the labels where known, every artifact's own angles on this
machine, the budget, fsanet-edge itself as a pure-Python wheel (kit/wheel.py: the package is on
no package index) with a requirements.txt that pins its sha256, a README.txt with the device's
steps, and SHA256SUMS of every file, whose own sha256 is printed here: the device checks the kit
with its own sha256sum against that line before installing anything. It is written in a
temporary folder beside DIR and renamed into place: no half kit is ever seen.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fsanet.kit import layout
from fsanet.kit.wheel import kit_wheel, requirements_text

from fsanet import __version__
from fsanet.errors import BackendUnavailable, DataError, ModelError
from fsanet.files import atomic_write, json_text, sha256
from fsanet.limits import MAX_GOLDEN_FACES, check_count

DEFAULT_COUNT = 200
DEFAULT_SEED = 0


@dataclass
class Source:
    """One artifact given on the command line."""

    spec: str  # as given, `FILE` or `FILE@format`
    path: Path
    input_format: str | None
    backend: str
    precision: str = "unknown"
    sidecar: Path | None = None
    angles: np.ndarray | None = None  # on the golden crops, here
    note: str = ""  # why it has no angles here

    @property
    def name(self) -> str:
        return self.path.name


def _source(spec: str, known: list[Source]) -> Source:
    """The Source of one artifact argument: the one already in `known` for the same file, else a
    new one appended to it (file names must differ: they name artifacts in the budget)."""
    from fsanet.runtimes import backend_of, partition_spec, split_spec

    from fsanet.manifest import sidecar_path

    file, _ = split_spec(spec)  # a bad @format fails here
    path = Path(file)
    if not path.is_file():
        raise DataError(f"{path}: no such model file")
    if path.suffix.lower() in (".engine", ".plan"):
        raise DataError(
            f"{path}: a TensorRT engine runs only on the GPU and TensorRT version that built it; bundle the "
            "ONNX files and build engines on the device with `fsanet check DIR --build tensorrt-fp16`"
        )
    backend = backend_of(path)  # names the supported suffixes
    same = next((s for s in known if s.path.resolve() == path.resolve()), None)
    if same is not None:
        return same
    clash = next((s.path for s in known if s.name == path.name), None)
    if clash is not None or path.name in layout.RESERVED:
        raise DataError(
            f"{path}: its file name is also that of {clash or 'a file of the kit itself'}; artifacts are named "
            "by file name in the kit and its budget: rename one"
        )
    side = sidecar_path(path)
    fmt = partition_spec(spec)[1]
    known.append(Source(str(spec), path, fmt, backend, sidecar=side if side.is_file() else None))
    return known[-1]


def _sources(specs: list[str], reference: str | None) -> tuple[list[Source], Source | None]:
    out: list[Source] = []
    for spec in specs:
        _source(str(spec), out)
    return out, (_source(str(reference), out) if reference else None)


def _golden_faces(faces: str | None, count: int, seed: int):
    """(crops, labels or None, names, description): `count` faces spread evenly over `faces`,
    or `count` synthetic heads of `seed`."""
    from fsanet.data import open_faces

    spec = faces or f"synthetic:{count}:{seed}"
    fs = open_faces(spec)
    if len(fs) == 0:
        raise DataError(f"{spec}: no faces found for the golden set")
    idx = np.unique(np.linspace(0, len(fs) - 1, min(count, len(fs))).round().astype(int))
    crops = np.stack([fs.load(int(i)) for i in idx])
    labels = None if fs.poses is None else np.asarray(fs.poses, np.float32)[idx]
    names = [fs.names[int(i)] for i in idx]
    what = f"{len(idx)} of {len(fs)} faces from {fs.source}" if len(idx) < len(fs) else fs.describe()
    return crops, labels, names, what


def _run_here(sources: list[Source], crops: np.ndarray) -> None:
    """Each artifact's angles on the golden crops on this machine, where its backend is
    installed (a missing one is noted: the device may still run it)."""
    from fsanet.runtimes.estimator import PoseEstimator

    from fsanet import runtimes
    from fsanet.manifest import read_sidecar

    for s in sources:
        try:
            with runtimes.open(s.spec, threads=1) as rt:
                s.precision = rt.precision
                s.angles = PoseEstimator(rt, check_finite=False).predict(crops).astype(np.float32)
        except BackendUnavailable as e:
            s.note = f"not run here: {e}"
            s.precision = (read_sidecar(s.path) or {}).get("precision", "unknown")


def _pick_reference(sources: list[Source], given: Source | None) -> Source:
    if given is not None:
        ref = given
    else:
        floats = [s for s in sources if s.path.suffix.lower() == ".onnx" and s.precision == "fp32"]
        if len(floats) != 1:
            found = ", ".join(s.name for s in floats) or "none"
            raise DataError(
                f"bundle: the golden angles come from the FP32 ONNX among the artifacts, found {found}; "
                "name the float reference with --reference FILE"
            )
        ref = floats[0]
    if ref.angles is None:
        raise DataError(f"{ref.path}: the reference must run on this machine ({ref.note})")
    bad = int((~np.isfinite(ref.angles)).any(axis=1).sum())
    if bad:
        raise ModelError(f"{ref.path}: the reference produced non-finite angles on {bad} faces; it cannot be golden")
    return ref


def _budget(budget: str | Path, names: list[str]) -> tuple[Path, list[str]]:
    """The budget file, validated, and its sections that name no artifact of the kit (the check
    lists them as not judged)."""
    from fsanet.benchmarks.budget import budget_path, load_budget

    limits = load_budget(budget)
    unused = sorted(set(limits) - {"all"} - set(names))
    return budget_path(budget), unused


def _quoted(reqs: list[str]) -> str:
    return " ".join(f"'{r}'" for r in reqs)


def device_steps(name: str) -> list[str]:
    """The device's verification and install, as README.txt gives them (a test runs them as
    written, with H filled in): the kit is checked with the device's own sha256sum against the
    host's line before pip installs anything, and pip installs the wheel only by its sha256."""
    return [
        "H=PASTE_THE_64_HEX_DIGITS_OF_THE_HOST_LINE",
        f'echo "$H  {name}/{layout.SUMS}" | sha256sum -c --strict - &&',
        f"(cd {name} && sha256sum -c --strict --quiet {layout.SUMS} &&",
        f'  test "$(ls -A | grep -cvx -e check -e \'check-.*\')" -eq "$(( $(wc -l < {layout.SUMS}) + 1 ))") &&',
        f"(cd {name} && pip install --no-deps --require-hashes -r {layout.REQUIREMENTS})",
    ]


def readme_text(name: str, manifest: dict, wheel: Path) -> str:
    from fsanet.kit.wheel import runtime_requirements

    arts = manifest["artifacts"]
    golden = manifest["golden"]
    base, extras = runtime_requirements(wheel)
    runtimes = sorted({(a["backend"], Path(a["file"]).suffix) for a in arts})
    lines = [
        f"fsanet device kit '{name}', made by fsanet-edge {manifest['fsanet']} on {manifest['created']}",
        f"on {manifest['built_on']['cpu']} ({manifest['built_on']['arch']}).",
        "",
        "Artifacts: " + ", ".join(f"{a['file']} ({a['backend']}, {a['precision']})" for a in arts),
        f"Float reference: {manifest['reference']}; golden set: {golden['description']}"
        + ("; labelled." if golden["labelled"] else "; unlabelled."),
        "",
        "Trusted: the line 'SHA256SUMS sha256: <64 hex digits>' that `fsanet bundle` printed where the",
        "kit was made (bring it apart from the kit: nothing in a kit can vouch for the kit), and the",
        "device's own sha256sum and pip. Nothing of the kit, this file included, is trusted before",
        "step 2 passed; the same steps are in fsanet-edge's docs/device-kit.md.",
        "",
        "On the device (bash, GNU coreutils, Python 3.10+, a virtual environment), in the folder that",
        f"holds {name}/; each step runs only when the one before passed:",
        "",
        *(f"  {line}" for line in device_steps(name)),
        "",
        f"1: {layout.SUMS} is the host's; 2: every file matches it, and nothing else is in the kit (check/",
        "and check-*/ are fsanet check's reports); 3: pip installs fsanet-edge only if the wheel has the",
        f"sha256 in {layout.REQUIREMENTS} (--no-deps: pip's hash mode wants a hash for every package it",
        "installs). Then the dependencies from the package index, the runtime of each artifact, the check:",
        "",
        f"  pip install {_quoted(base)}",
        *(f"  pip install {_quoted(extras.get(b, []))}   # runs the {suffix} files" for b, suffix in runtimes),
        f"  fsanet check {name}",
        "",
        "Or from the machine that holds the kit, over ssh (key login): it runs steps 1 and 2 there with",
        "the device's sha256sum, checks that the fsanet-edge of --remote-python is the kit's wheel, then",
        "runs the check:",
        "",
        f"  fsanet check {name} --remote user@device --remote-python python3",
        "",
        f"The check verifies every file again (SHA256SUMS and {layout.MANIFEST}), then runs every artifact",
        "whose runtime is installed and writes check/check.md and check/check.json: drift and MAE",
        "against the golden angles, latency hot and in the loop, this device's fingerprint, a verdict",
        "per artifact by budget.toml, and the artifact to ship on this device.",
        "Exit code: 0 every artifact that ran holds the budget, 1 a limit is missed,",
        "2 a damaged kit or a bad option (the message names it), 3 an internal error.",
        "On a Jetson, build TensorRT engines from the kit's ONNX and check them too:",
        f"  fsanet check {name} --build tensorrt-fp16,tensorrt-int8",
        "",
    ]
    return "\n".join(lines)


def _write_folder(tmp: Path, sources, ref, crops, labels, names, budget_file, calib, wheel, manifest) -> None:
    """Every file of the kit; bundle.json lists all but itself and SHA256SUMS, which lists all
    but itself (its own sha256 is printed on the host: make_bundle returns it)."""
    carried = wheel.write(tmp)
    for s in sources:
        shutil.copyfile(s.path, tmp / s.name)
        if s.sidecar is not None:
            shutil.copyfile(s.sidecar, tmp / f"{s.name}.json")
    golden = {"crops": crops, "reference": ref.angles, "names": np.array(names)}
    if labels is not None:
        golden["labels"] = labels
    np.savez(tmp / layout.GOLDEN, **golden)
    np.savez(tmp / layout.HOST_ANGLES, **{s.name: s.angles for s in sources if s.angles is not None})
    shutil.copyfile(budget_file, tmp / layout.BUDGET)
    if calib is not None:
        shutil.copyfile(calib, tmp / layout.CALIB)
    (tmp / layout.REQUIREMENTS).write_text(requirements_text(carried.name, sha256(carried)))
    (tmp / layout.README).write_text(readme_text(manifest["name"], manifest, carried))
    manifest["files"] = {p.name: sha256(p) for p in sorted(tmp.iterdir())}
    (tmp / layout.MANIFEST).write_text(json_text(manifest))
    sums = {p.name: sha256(p) for p in tmp.iterdir()}
    (tmp / layout.SUMS).write_text(layout.sums_text(sums))


def _check_output(output: Path, inputs: list[Path], tar: bool) -> None:
    from fsanet.paths import check_output_dir, check_output_file

    check_output_dir(output, inputs)
    if output.exists() and any(output.iterdir()):
        raise DataError(f"-o {output}: exists and is not empty; give a new folder for the kit (or remove it)")
    if tar:
        check_output_file(tar_path(output), inputs, "--tar")


def tar_path(output: Path) -> Path:
    return output.with_name(output.name + ".tar.gz")


def make_bundle(
    artifacts: list[str],
    output: str | Path,
    *,
    faces: str | None = None,
    count: int = DEFAULT_COUNT,
    seed: int = DEFAULT_SEED,
    budget: str | Path = "default",
    reference: str | None = None,
    calib: str | Path | None = None,
    tar: bool = False,
    wheel: str | Path | None = None,
) -> dict:
    """Write the kit folder `output` (and `output.tar.gz` with `tar`); returns bundle.json's content
    plus `sha256sums`, the sha256 of SHA256SUMS (the line the device compares first; in no file of
    the kit). `wheel`: the fsanet-edge wheel the kit carries (default: built from the source tree)."""
    from fsanet import machine
    from fsanet.accuracy import mae

    if not artifacts:
        raise DataError("bundle: give at least one artifact")
    check_count(count, MAX_GOLDEN_FACES, "bundle --count (fsanet.limits.MAX_GOLDEN_FACES)")
    output = Path(output)
    sources, given_ref = _sources(list(artifacts), reference)
    _check_output(output, [s.path for s in sources], tar)
    if calib is not None and not Path(calib).is_file():
        raise DataError(f"{calib}: no such calibration set (make one with `fsanet calib build`)")
    budget_file, unused = _budget(budget, [s.name for s in sources])
    carried = kit_wheel(wheel)  # an installed fsanet-edge without --wheel fails here, before any work
    crops, labels, names, described = _golden_faces(faces, count, seed)
    _run_here(sources, crops)
    ref = _pick_reference(sources, given_ref)
    manifest = {
        "format": layout.FORMAT,
        "version": layout.VERSION,
        "name": output.resolve().name,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "fsanet": __version__,
        "built_on": machine.fingerprint(1),
        "reference": ref.name,
        "artifacts": [
            {
                "file": s.name,
                "backend": s.backend,
                "precision": s.precision,
                "sidecar": f"{s.name}.json" if s.sidecar else None,
                "input_format": s.input_format,
                "host_angles": s.angles is not None,
                "host_note": s.note or None,
            }
            for s in sources
        ],
        "golden": {
            "file": layout.GOLDEN,
            "count": len(crops),
            "source": faces or f"synthetic:{count}:{seed}",
            "description": described,
            "labelled": labels is not None,
            "reference_mae": mae(ref.angles, labels) if labels is not None else None,
        },
        "budget": {"file": layout.BUDGET, "source": str(budget), "sections_naming_no_artifact": unused},
        "calib": {"file": layout.CALIB, "source": str(calib)} if calib else None,
        "wheel": {"file": carried.name, "version": __version__, "source": carried.source},
    }
    fill = [sources, ref, crops, labels, names, budget_file, calib, carried, manifest]
    _publish(output, lambda tmp: _write_folder(tmp, *fill))
    if tar:
        atomic_write(tar_path(output), lambda tmp: _tar(output, tmp))
    return manifest | {"sha256sums": sha256(output / layout.SUMS)}  # not in the kit: it cannot vouch for itself


def _publish(output: Path, fill) -> None:
    """fill(tmp) a temporary folder beside `output`, then rename it into place."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}."))
    try:
        fill(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700 folders
        if output.exists():
            output.rmdir()  # empty (checked before any work)
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _tar(folder: Path, dest: str) -> None:
    with tarfile.open(dest, "w:gz") as t:
        for f in sorted(folder.iterdir()):
            t.add(f, arcname=f"{folder.name}/{f.name}", recursive=False)


def summary(manifest: dict, output: Path) -> list[str]:
    lines = [f"wrote {output}: {len(manifest['artifacts'])} artifacts, golden set {manifest['golden']['description']}"]
    for a in manifest["artifacts"]:
        note = "" if a["host_angles"] else f" ({a['host_note']})"
        lines.append(f"  {a['file']}: {a['backend']}, {a['precision']}" + note)
    lines.append(f"  reference: {manifest['reference']}; budget: {manifest['budget']['source']}")
    lines.append(f"  fsanet-edge for the device: {manifest['wheel']['file']} ({manifest['wheel']['source']})")
    unused = manifest["budget"]["sections_naming_no_artifact"]
    if unused:
        lines.append(f"  budget sections naming no artifact of the kit (not judged): {unused}")
    lines.append(f"{layout.SUMS} sha256: {manifest['sha256sums']}")
    lines.append(
        f"  the device's first step compares this line with `sha256sum {output.name}/{layout.SUMS}`: bring it "
        f"there apart from the kit (steps: {output / layout.README}, or fsanet-edge's docs/device-kit.md)"
    )
    return lines
