"""The feature examples (blobs, verification reruns, plans, the release script) run for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import signer_config
from tests.infra.images import Pusher, push_index
from tests.infra.registry import RegistryServer
from tests.infra.tools import KeyPair, Tools

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COSIGN_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_examples(
    tools: Tools, registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps({"cosign_signer": signer_config(tools.cosign["3"], registry, keypair)})
    )
    config.chmod(0o600)
    python = sys.executable
    artifact = tmp_path / "app.tar"
    artifact.write_bytes(b"artifact")

    blob = run([python, str(EXAMPLES / "sign_blob.py"), str(config), "prod", "app.tar"], tmp_path)
    assert blob.returncode == 0, blob.stderr
    assert (tmp_path / "app.tar.sigstore.json").is_file()

    image = push(repo="examples", tag="1.0")
    assert image.by_tag is not None
    planned = run(
        [python, str(EXAMPLES / "plan.py"), str(config), "prod", "--no-upload-run", image.by_tag],
        tmp_path,
    )
    assert planned.returncode == 0, planned.stderr
    assert f"would sign {image.by_tag} -> {image.digest}" in planned.stdout

    rerun = [python, str(EXAMPLES / "verify_and_rerun.py"), str(config), "prod", image.by_tag]
    first = run(rerun, tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"unsigned  {image.by_tag}" in first.stdout
    assert f"signed    {image.by_tag}" in first.stdout
    second = run(rerun, tmp_path)
    assert f"skipped   {image.by_tag}" in second.stdout

    children = [push(repo="examples") for _ in range(2)]
    push_index(registry.url, "examples", "multi", [c.digest for c in children],
               auth=registry.credentials)  # fmt: skip
    refs = tmp_path / "refs.txt"
    refs.write_text(f"# release 1.0\n{image.by_tag}\n{registry.host}/examples:multi\n")
    release = run(
        ["bash", str(EXAMPLES / "release.sh"), str(config), "prod", str(refs), "app.tar"], tmp_path
    )
    assert release.returncode == 0, release.stdout + release.stderr
    statuses = [
        json.loads(line)["status"] for line in (tmp_path / "signed.jsonl").read_text().splitlines()
    ]
    assert statuses == ["skipped", "signed"]


def test_sign_images_example(
    tools: Tools, registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps({"cosign_signer": signer_config(tools.cosign["2"], registry, keypair)})
    )
    config.chmod(0o600)
    good = push(repo="example-batch")
    missing = f"{registry.host}/example-batch@sha256:{'d' * 64}"
    script = str(EXAMPLES / "sign_images.py")
    ok = run([sys.executable, script, str(config), "prod", good.by_digest], tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert f"signed  {good.by_digest} -> {good.digest} (key prod)" in ok.stdout
    partial = run([sys.executable, script, str(config), "prod", good.by_digest, missing], tmp_path)
    assert partial.returncode == 1
    assert f"FAILED  {missing}: ImageNotFoundError" in partial.stdout


def test_make_demo_script_signs_and_verifies(tools: Tools, tmp_path: Path) -> None:
    """What `make demo` runs (README's first command), end to end on both cosign generations."""
    demo = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"
    done = run([sys.executable, str(demo)], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("cosign verify: OK") == 2
    assert "demo passed" in done.stdout
