"""The cosign-signer command line, run as a subprocess against real cosign and a real registry."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import signer_config
from tests.infra.images import Pusher, signature_tags
from tests.infra.registry import RegistryServer
from tests.infra.tools import KeyPair, Tools

CLI = str(Path(sys.executable).parent / "cosign-signer")  # the console script pyproject installs
MISSING = "sha256:" + "0" * 63 + "3"


def write_config(path: Path, section: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"cosign_signer": section}))  # JSON is YAML
    path.chmod(0o600)
    return path


def environ(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COSIGN_", "XDG_"))}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    return env


def run(
    args: list[str], *, cwd: Path, stdin: str | None = None, argv0: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(argv0 or [CLI]), *args],
        cwd=cwd,
        env=environ(cwd),
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.fixture
def config(cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, tmp_path: Path) -> Path:
    return write_config(tmp_path / "signer.yaml", signer_config(cosign_bin, registry, keypair))


def test_sign_verify_and_rerun_with_json(
    config: Path, registry: RegistryServer, push: Pusher, tmp_path: Path
) -> None:
    tagged, plain, unsigned = push(repo="cli", tag="v1"), push(repo="cli"), push(repo="cli")
    assert tagged.by_tag is not None
    missing = f"{registry.host}/cli@{MISSING}"
    refs = [tagged.by_tag, plain.by_digest, missing]
    done = run(["sign", "--config", str(config), "--json", "--key", "prod", *refs], cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    out = records(done.stdout)
    assert [r["reference"] for r in out] == refs
    assert [r["status"] for r in out] == ["signed", "signed", "failed"]
    assert out[0]["digest"] == tagged.digest
    assert out[2]["ok"] is False
    assert out[2]["error"]["type"] == "ImageNotFoundError"
    assert "MANIFEST_UNKNOWN" in out[2]["error"]["message"]
    assert registry.password not in done.stdout + done.stderr

    checked = run(
        ["--config", str(config), "verify", "--json", "--key", "prod",
         tagged.by_digest, unsigned.by_digest],
        cwd=tmp_path,
    )  # fmt: skip
    assert checked.returncode == 1
    good, bad = records(checked.stdout)
    assert (good["status"], good["digest"]) == ("verified", tagged.digest)
    assert good["payloads"][0]["critical"]["image"]["docker-manifest-digest"] == tagged.digest
    assert (bad["status"], bad["error"]["type"], bad["error"]["exit_code"]) == (
        "failed",
        "VerificationError",
        10,
    )

    # references from stdin; a rerun signs nothing
    stdin = f"{tagged.by_tag}\n# a comment\n\n{plain.by_digest}\n"
    rerun = run(
        ["sign", "--config", str(config), "--json", "--skip-signed", "--key", "prod", "-"],
        cwd=tmp_path,
        stdin=stdin,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert [(r["reference"], r["status"]) for r in records(rerun.stdout)] == [
        (tagged.by_tag, "skipped"),
        (plain.by_digest, "skipped"),
    ]
    text = run(["verify", "--config", str(config), "--key", "prod", plain.by_digest], cwd=tmp_path)
    assert text.returncode == 0
    assert text.stdout.startswith(f"verified  {plain.by_digest}  {plain.digest}")


def test_sign_blob_plan_and_config_check(
    config: Path, cosign_gen: str, registry: RegistryServer, push: Pusher, tmp_path: Path
) -> None:
    file = tmp_path / "artifact.bin"
    file.write_bytes(b"release artifact\n")
    done = run(["sign-blob", "--config", str(config), "--json", "artifact.bin"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # one alias configured: --key may be left out
    (record,) = records(done.stdout)
    assert record["path"] == "artifact.bin"
    assert record["bundle_path"] == str(tmp_path / "artifact.bin.sigstore.json")
    assert Path(record["bundle_path"]).is_file()
    failed = run(["sign-blob", "--config", str(config), "nope.bin"], cwd=tmp_path)
    assert failed.returncode == 1
    assert failed.stdout.startswith("FAILED    nope.bin  ArtifactNotFoundError")

    image = push(repo="cli-plan")
    planned = run(
        ["plan", "--config", str(config), "--json", "--no-upload", image.by_digest, "a.io/app:1"],
        cwd=tmp_path,
    )
    assert planned.returncode == 0, planned.stderr
    commands = records(planned.stdout)
    argv = [a for c in commands for a in c["argv"]]
    assert "--upload=false" in argv
    assert image.by_digest in argv
    assert [u for c in commands for u in c["unresolved"]] == ["a.io/app:1"]
    assert signature_tags(registry.url, "cli-plan", image.digest, auth=registry.credentials) == []

    check = run(["config", "check", "--config", str(config)], cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"({cosign_gen}.x)" in check.stdout
    assert check.stdout.rstrip().endswith("ok")


def test_usage_config_and_cosign_errors(tools: Tools, keypair: KeyPair, tmp_path: Path) -> None:
    section = signer_config(tools.cosign["3"], None, keypair)
    # no config anywhere
    assert run(["config", "check"], cwd=tmp_path).returncode == 2
    assert "no configuration file" in run(["sign", "a.io/app:1"], cwd=tmp_path).stderr
    # found in $XDG_CONFIG_HOME/cosign-signer/, then ./config.yaml first
    (tmp_path / "xdg" / "cosign-signer").mkdir(parents=True)
    write_config(tmp_path / "xdg" / "cosign-signer" / "config.yaml", section)
    found = run(["config", "check", "--json"], cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["config"].endswith("xdg/cosign-signer/config.yaml")
    write_config(tmp_path / "config.yaml", {**section, "key_aliases": {"a": "/no/such.key"}})
    local = run(["config", "check", "--json"], cwd=tmp_path)
    assert local.returncode == 2
    report = json.loads(local.stdout)
    assert report["config"] == "config.yaml"
    assert report["problems"] == ["key_aliases['a']: key file /no/such.key does not exist"]
    (tmp_path / "config.yaml").unlink()

    cases: list[tuple[list[str], int, str]] = [
        (["sign", "--key", "prdo", "a.io/app:1"], 2, "did you mean 'prod'"),
        (["sign", "--key", "prod", "a.io/app:1", "a b:1"], 2, "invalid image reference 'a b:1'"),
        (["sign", "--key", "prod"], 2, "no references"),
        (["verify", "--key", "prod", "--", "-x"], 2, "must not start with '-'"),
        (["sign-blob", "--bundle", "b.json", "f1", "f2"], 2, "one file"),
        (["sign", "--frobnicate", "a.io/app:1"], 2, "unrecognized arguments"),
        (["sign", "-a", "novalue", "a.io/app:1"], 2, "KEY=VALUE"),
    ]
    for args, code, message in cases:
        done = run(args, cwd=tmp_path)
        assert (done.returncode, done.stdout) == (code, ""), (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)

    write_config(tmp_path / "bad.yaml", {**section, "retries": "3", "timout": 5})
    bad = run(["sign", "--config", "bad.yaml", "a.io/app:1"], cwd=tmp_path)
    assert bad.returncode == 2
    assert "retries" in bad.stderr
    assert "timout" in bad.stderr

    write_config(tmp_path / "nocosign.yaml", {**section, "cosign_binary": "/no/cosign"})
    for args in (["sign", "a.io/app@" + MISSING], ["config", "check"], ["sign-blob", "x"]):
        done = run([*args, "--config", "nocosign.yaml"], cwd=tmp_path)
        assert done.returncode == 3, (args, done.stderr)
    module = run(["--version"], cwd=tmp_path, argv0=[sys.executable, "-m", "cosign_signer"])
    assert module.returncode == 0
    assert module.stdout.startswith("cosign-signer ")


def test_progress_line_only_on_a_terminal(
    tools: Tools, registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "c.yaml", signer_config(tools.cosign["2"], registry, keypair, max_workers=1)
    )
    refs = [push(repo="cli-tty").by_digest for _ in range(2)]
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [CLI, "sign", "--config", str(config), *refs],
            cwd=tmp_path,
            env=environ(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
        )
        os.close(terminal)
        seen = b""
        while True:
            ready, _, _ = select.select([controller], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        stdout, _ = process.communicate(timeout=60)
    finally:
        os.close(controller)
    assert process.returncode == 0
    assert b"[2/2] signing" in seen
    assert stdout.count("signed ") == 2
    piped = run(["sign", "--config", str(config), *refs], cwd=tmp_path)
    assert piped.returncode == 0
    assert "[1/2]" not in piped.stderr
