"""`fsanet check DIR --remote user@127.0.0.1:PATH` against a real OpenSSH server started by the
test (tests/kit/conftest.py), the remote Python being this repository's: copy, run, fetch, exit
codes passed through, and errors that name the host and the failing step."""

from __future__ import annotations

import json
import sys

FAST = ["--runs", "4", "--warmup", "1"]


def remote_check(cli, capsys, kit, sshd, target: str, *extra):
    return cli(capsys, "check", kit, "--remote", target, "--remote-python", sys.executable, *sshd.argv(), *FAST, *extra)


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
    assert code == 2 and f"{sshd.host}: run failed" in err and "--remote-python" in err
    code, _, err = cli(capsys, "check", tiny_kit, "--remote", ":path", *FAST)
    assert code == 2 and "give user@host" in err


def test_a_damaged_kit_is_refused_before_any_copy(tiny_kit, sshd, tmp_path, cli, capsys):
    import shutil

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
