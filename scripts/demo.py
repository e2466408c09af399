"""`make demo`: sign and verify an image end to end with the library and the real cosign.

Starts a local registry (htpasswd auth) on a free loopback port, pushes a sample image, makes a
throwaway encrypted key pair, signs the image by tag through ``Signer`` with
``examples/config.yaml`` and the alias ``release``, verifies with ``cosign verify``, prints the
result and stops the registry. Runs once per cosign generation provisioned (2.x and 3.x).
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cosign_signer import Signer  # noqa: E402 - after the path set-up above
from tests.infra.images import push_image  # noqa: E402
from tests.infra.registry import HtpasswdAuth, RegistryServer  # noqa: E402
from tests.infra.tools import GENERATIONS, cosign_environ, find_tools, generate_key_pair  # noqa: E402


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="  %(levelname)s %(name)s: %(message)s")
    tools = find_tools(ROOT)
    with tempfile.TemporaryDirectory(prefix="cosign-signer-demo-") as tmp:
        work = Path(tmp)
        keys = generate_key_pair(tools, work / "keys", "demo")
        auth = HtpasswdAuth("demo", secrets.token_urlsafe(16))
        with RegistryServer(tools.registry, auth=auth) as registry:
            print(f"registry: {registry.url} (htpasswd auth, user {auth.user})")
            for gen in GENERATIONS:
                cosign = tools.cosign[gen]
                print(f"\n== cosign {gen}.x ({tools.cosign_versions[gen]}) ==")
                digest = push_image(registry.url, "demo/app", "1.0", auth=auth.credentials)
                ref = f"{registry.host}/demo/app:1.0"
                print(f"pushed {ref} ({digest})")
                os.environ.update(
                    DEMO_COSIGN=str(cosign),
                    DEMO_REGISTRY_USER=auth.user,
                    DEMO_REGISTRY_PASSWORD=auth.password,
                    DEMO_KEY_PASSWORD=keys.password,
                    DEMO_KEY_PATH=str(keys.key_path),
                )
                signer = Signer.from_config_file(ROOT / "examples" / "config.yaml")
                result = signer.sign_image(ref, key="release", annotations={"demo": "true"})
                print(f"signed: {result}")
                env = cosign_environ(
                    home=work, docker_config=registry.write_docker_config(work / f"dc{gen}")
                )
                verified = subprocess.run(
                    [
                        str(cosign),
                        "verify",
                        "--key",
                        str(keys.pub_path),
                        "--insecure-ignore-tlog",
                        f"{registry.host}/demo/app@{result.digest}",
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                if verified.returncode != 0:
                    print(f"cosign verify FAILED:\n{verified.stderr}")
                    return 1
                print(f"cosign verify: OK ({verified.stderr.strip().splitlines()[0]})")
    print("\ndemo passed: signed by the library, verified by cosign, registry stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
