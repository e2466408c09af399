"""Print what the real cosign 2.x and 3.x say under each registry fault of the test fault proxy.

Run from the repo root after ``scripts/provision.sh``::

    .venv/bin/python scripts/observe_cosign_faults.py            # JSON lines on stdout
    .venv/bin/python scripts/observe_cosign_faults.py 503-ping   # only the faults named

Each line: the fault, the cosign generation, the exit code, the seconds the run took, how many
requests the proxy faulted (cosign's own retries show here) and cosign's last ``Error:`` line.
The lines in tests/unit/test_classify.py (``OBSERVED``) were copied from this output; re-run it
when a cosign version changes.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.infra.fault_proxy import PING, WRITES, FaultProxy  # noqa: E402 - path set above
from tests.infra.images import push_image  # noqa: E402
from tests.infra.registry import HtpasswdAuth, RegistryServer  # noqa: E402
from tests.infra.tools import (  # noqa: E402
    GENERATIONS,
    cosign_environ,
    find_tools,
    generate_key_pair,
)

Fault = Callable[[FaultProxy], object]
GET = ["GET"]

FAULTS: dict[str, Fault] = {
    "503-writes": lambda p: p.respond(503, count=None, methods=WRITES),
    "429-writes": lambda p: p.respond(429, count=None, methods=WRITES),
    "500-unknown-writes": lambda p: p.respond(
        500, count=None, methods=WRITES, message="unknown error"
    ),
    "reset-writes": lambda p: p.reset(count=None, methods=WRITES),
    "401-writes": lambda p: p.respond(401, count=None, methods=WRITES),
    "401-password-writes": lambda p: p.respond(
        401, count=None, methods=WRITES, message="incorrect username or password"
    ),
    "403-denied-writes": lambda p: p.respond(
        403, count=None, methods=WRITES, message="requested access to the resource is denied"
    ),
    "503-ping": lambda p: p.respond(503, count=None, methods=GET, path=PING),
    "429-ping": lambda p: p.respond(429, count=None, methods=GET, path=PING),
    "502-html-ping": lambda p: p.respond(
        502, count=None, methods=GET, path=PING, body=b"<html>bad gateway</html>"
    ),
    "504-text-ping": lambda p: p.respond(
        504, count=None, methods=GET, path=PING, body=b"upstream timed out"
    ),
    "reset-ping": lambda p: p.reset(count=None, methods=GET, path=PING),
    "stall-writes-cosign-timeout": lambda p: p.stall(30, count=None, methods=WRITES),
    "stall-ping-cosign-timeout": lambda p: p.stall(30, count=None, methods=GET, path=PING),
}


def main(names: list[str]) -> None:
    tools = find_tools(REPO)
    work = Path(tempfile.mkdtemp(prefix="observe-faults-"))
    keys = generate_key_pair(tools, work / "keys", "signing")
    auth = HtpasswdAuth("signer", secrets.token_urlsafe(12))
    chosen = {n: f for n, f in FAULTS.items() if not names or n in names}
    with RegistryServer(tools.registry, auth=auth) as registry:
        for name, fault in chosen.items():
            for gen in GENERATIONS:
                with FaultProxy(registry.port) as proxy:
                    digest = push_image(registry.url, "app", None, auth=registry.credentials)
                    folder = work / f"docker-{proxy.port}"
                    folder.mkdir(mode=0o700)
                    token = base64.b64encode(f"{auth.user}:{auth.password}".encode()).decode()
                    (folder / "config.json").write_text(
                        json.dumps({"auths": {proxy.host: {"auth": token}}})
                    )
                    fault(proxy)
                    offline = ["--tlog-upload=false"]
                    if gen == "3":
                        offline.insert(0, "--use-signing-config=false")
                    # a short --timeout of cosign's own, for the stalls
                    extra = ["--timeout=2s"] if name.startswith("stall") else []
                    argv = [str(tools.cosign[gen]), "sign", "--key", str(keys.key_path), "-y",
                            *offline, *extra, f"{proxy.host}/app@{digest}"]
                    env = cosign_environ(home=work, docker_config=folder, password=keys.password)
                    started = time.monotonic()
                    done = subprocess.run(
                        argv, env=env, capture_output=True, text=True, timeout=300, check=False
                    )
                    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("Error: ")]
                    print(json.dumps({
                        "fault": name,
                        "gen": gen,
                        "rc": done.returncode,
                        "seconds": round(time.monotonic() - started, 2),
                        "faulted": sum(1 for r in proxy.requests if r[2] != "forwarded"),
                        "line": errors[-1] if errors else done.stderr.strip()[-300:],
                    }), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
