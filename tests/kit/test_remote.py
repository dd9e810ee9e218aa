"""`fsanet check DIR --remote user@127.0.0.1:PATH` against a real OpenSSH server started by the
test (tests/kit/conftest.py), the remote Python a venv with the kit's wheel installed (conftest's
device_python): copy, verify there with the device's sha256sum, check the install, run, fetch, exit
codes passed through, and errors that name the host and the failing step."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

FAST = ["--runs", "4", "--warmup", "1"]


def remote_check(cli, capsys, kit, sshd, target: str, *extra, python=None):
    python = python or sshd.python
    return cli(capsys, "check", kit, "--remote", target, "--remote-python", python, *sshd.argv(), *FAST, *extra)


@pytest.fixture
def sshd(sshd, device_python):
    """The server, and the device's Python: fsanet-edge from the kits' wheel."""
    return SimpleNamespace(**vars(sshd), argv=sshd.argv, python=device_python)


def test_remote_check_copies_runs_and_fetches(tiny_kit, sshd, tmp_path, cli, capsys):
    there = tmp_path / "device" / "kits" / "tiny"
    code, out, err = remote_check(cli, capsys, tiny_kit, sshd, f"{sshd.host}:{there}", "-o", tmp_path / "rep")
    assert code == 0, out + err
    r = json.loads((tmp_path / "rep" / "check.json").read_text())
    fetched = sorted(p.name for p in (tmp_path / "rep").iterdir())
    assert fetched == sorted(r["files"]) and {"check.json", "check.md"} <= set(fetched)  # + plots with matplotlib
    assert r["verdict"] == "PASS" and r["bundle"]["folder"] == "."
    assert (there / "check" / "check.json").is_file() and (there / "bundle.json").is_file()
    assert "verdict: PASS" in out  # the remote output, streamed
    code, out, err = remote_check(cli, capsys, tiny_kit, sshd, f"{sshd.host}:{there}", "-o", tmp_path / "rep")
    assert code == 0, out + err  # into the same remote folder again


def test_remote_budget_failure_passes_exit_1_through(tiny_models, fsanet_wheel, sshd, tmp_path, cli, capsys):
    kit = tmp_path / "kit"
    argv = [tiny_models["nan"], "--reference", tiny_models["mean"], "--count", "4", "--wheel", fsanet_wheel]
    assert cli(capsys, "bundle", *argv, "-o", kit)[0] == 0
    code, out, _ = remote_check(cli, capsys, kit, sshd, f"{sshd.host}:{tmp_path / 'there'}", "-o", tmp_path / "rep")
    assert code == 1 and "nan.onnx: the model produced non-finite angles" in out
    assert json.loads((tmp_path / "rep" / "check.json").read_text())["verdict"] == "FAIL"


def test_remote_errors_name_the_host_and_the_step(tiny_kit, sshd, tmp_path, cli, capsys):
    wrong_port = [a.replace(f"Port={sshd.port}", "Port=1") for a in sshd.argv()]
    code, _, err = cli(capsys, "check", tiny_kit, "--remote", f"{sshd.host}:{tmp_path / 'x'}", *wrong_port, *FAST)
    assert code == 2 and f"{sshd.host}: copy failed" in err
    code, _, err = cli(capsys, "check", tiny_kit, "--remote", f"{sshd.host}:{tmp_path / 'x'}", "--remote-python",
                       "/no/such/python3", *sshd.argv(), *FAST)  # fmt: skip
    assert code == 2 and f"{sshd.host}: install failed" in err and "--remote-python" in err
    code, _, err = cli(capsys, "check", tiny_kit, "--remote", ":path", *FAST)
    assert code == 2 and "give user@host" in err


def test_a_damaged_kit_is_refused_before_any_copy(tiny_kit, sshd, tmp_path, cli, capsys):
    kit = shutil.copytree(tiny_kit, tmp_path / "kit")
    (kit / "budget.toml").write_text("[all]\nmax_drift = 99\n")
    code, _, err = remote_check(cli, capsys, kit, sshd, f"{sshd.host}:{tmp_path / 'there'}")
    assert code == 2 and "budget.toml: sha256" in err and not (tmp_path / "there").exists()


def test_the_fusion_kit_over_ssh_gives_the_golden_fp32_angles(
    fusion_onnx, shared_data, fsanet_wheel, sshd, tmp_path, cli, capsys
):
    from fsanet.kit.bundle import make_bundle

    kit = tmp_path / "fusion-kit"
    helen = shared_data / "real-faces" / "helen-trainset"
    make_bundle([fusion_onnx], kit, faces=str(helen), count=64, wheel=fsanet_wheel)
    code, out, err = remote_check(cli, capsys, kit, sshd, f"{sshd.host}:{tmp_path / 'there'}")
    assert code == 0, out + err
    (report,) = kit.glob("check-*/check.json")  # the default report folder: check-<user@host>
    assert report.parent.name == "check-" + sshd.host.replace("@", "_")
    assert json.loads(report.read_text())["artifacts"]["fusion.onnx"]["drift"]["max"] <= 1e-3


def test_a_python_without_the_kits_wheel_is_refused_before_running(tiny_kit, sshd, tmp_path, cli, capsys, kit_helpers):
    there = tmp_path / "there"
    code, _, err = remote_check(cli, capsys, tiny_kit, sshd, f"{sshd.host}:{there}", python=sys.executable)
    assert code == 2 and f"{sshd.host}: install failed" in err  # this checkout's editable install
    assert f"imports fsanet from {Path(__import__('fsanet').__file__).resolve()}" in err
    assert "pip install --no-deps --require-hashes -r requirements.txt" in err
    bare = kit_helpers.make_venv(tmp_path / "bare", pip=False) / "python"
    code, _, err = remote_check(cli, capsys, tiny_kit, sshd, f"{sshd.host}:{there}", python=bare)
    assert code == 2 and f"fsanet-edge is not installed for {bare} there" in err
    assert not (there / "check").exists()  # nothing ran


def test_another_wheel_installed_there_is_refused(tiny_kit, sshd, tmp_path, cli, capsys):
    """The device's fsanet-edge has one file that differs from the kit's wheel."""
    site = Path(subprocess.run([str(sshd.python), "-c", "import fsanet; print(fsanet.__file__)"], capture_output=True,
                               text=True, check=True, cwd=tmp_path).stdout.strip()).parent  # fmt: skip
    judge = site / "kit" / "judge.py"
    honest = judge.read_bytes()
    try:
        judge.write_bytes(honest + b"\n# changed on the device\n")
        code, _, err = remote_check(cli, capsys, tiny_kit, sshd, f"{sshd.host}:{tmp_path / 'there'}")
    finally:
        judge.write_bytes(honest)
    assert code == 2 and "is not the kit's wheel (1 of" in err and "fsanet/kit/judge.py first" in err


def test_an_added_file_there_is_refused_before_running(tiny_kit, sshd, tmp_path, cli, capsys):
    there = tmp_path / "there"
    (there / "fsanet").mkdir(parents=True)  # would shadow the installed package for `python -m fsanet` there
    marker = tmp_path / "ran"
    (there / "fsanet" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    code, _, err = remote_check(cli, capsys, tiny_kit, sshd, f"{sshd.host}:{there}")
    assert code == 2 and f"{sshd.host}: verify failed: {there}/fsanet/ is not in SHA256SUMS" in err
    assert not marker.exists() and not (there / "check").exists()


def test_verify_uses_the_devices_sha256sum_on_the_copy(tiny_kit, sshd, tmp_path):
    from fsanet.kit import layout
    from fsanet.kit.remote import Remote, RemoteError, copy, verify

    there = tmp_path / "there"
    remote = Remote.parse(f"{sshd.host}:{there}", "kit", str(sshd.python), sshd.options)
    bundle = layout.Bundle(tiny_kit)
    copy(remote, tiny_kit, [*bundle.sums, layout.SUMS])
    verify(remote, bundle)  # the honest copy
    shutil.copyfile(tiny_kit / "golden.npz", there / "fsanet_edge-0.1.0-py3-none-any.whl")  # a swapped wheel there
    with pytest.raises(RemoteError, match=r"verify failed: `sha256sum -c SHA256SUMS` in .* failed \(.*whl: FAILED"):
        verify(remote, bundle)
    (there / "SHA256SUMS").write_text((there / "SHA256SUMS").read_text().replace("README", "READ"))
    with pytest.raises(RemoteError, match=r"SHA256SUMS there has sha256 [0-9a-f]{16}\.\.\., this host's"):
        verify(remote, bundle)
