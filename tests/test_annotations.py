"""Hostile but valid annotations reach the signature intact through the real cosign 2.x and 3.x;
unsafe ones are refused before any process starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cosign_signer import ConfigError
from tests.helpers import make_signer, verify
from tests.infra.images import Pusher
from tests.infra.registry import RegistryServer
from tests.infra.tools import KeyPair

# Each value would be trouble on a command line or in a shell: cosign gets it inside ONE argument,
# "-a key=value", which it reads as a line of CSV (so ',' and '"' are quoted for it).
SAFE = {
    "flag": "--key /etc/passwd",
    "dash": "-a",
    "comma": "x,evil",
    "quotes": 'say "hi", then, "bye"',
    "space": "two words",
    "shell": "$(id); `id` | true",
    "unicode": "é ✓ \u2028 line separator",
    "org.opencontainers/image.ref-name_v1.2": "ok",
}
# cosign refuses a second '=' (and would read "k=x,evil=1" as two annotations if it were let
# through unquoted); line breaks, NUL and flag-like or empty keys are refused by the library.
UNSAFE = [
    {"k": "a=b"},
    {"k": "x,evil=1"},
    {"k": "line\nbreak"},
    {"k": "cr\rhere"},
    {"a=b": "x"},
    {"-a": "x"},
    {"--key": "x"},
    {"a b": "x"},
    {"": "x"},
    {"k": "nul\x00"},
]


def test_hostile_annotation_values_are_signed_exactly(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    image = push()
    make_signer(cosign_bin, registry, keypair).sign_image(
        image.by_digest, key="prod", annotations=SAFE
    )
    checked = verify(
        cosign_bin, image.by_digest, keypair.pub_path, registry=registry, home=tmp_path
    )
    assert checked.returncode == 0, checked.stderr
    (payload,) = json.loads(checked.stdout)
    assert payload["optional"] == SAFE


@pytest.mark.parametrize("annotations", UNSAFE, ids=repr)
def test_unsafe_annotations_start_no_process(
    annotations: dict[str, str],
    registry: RegistryServer,
    keypair: KeyPair,
    tmp_path: Path,
    cosign_bin: Path,
) -> None:
    log = tmp_path / "ran"
    spy = tmp_path / "cosign-spy"
    spy.write_text(
        f'#!/bin/sh\n[ "$2" = --help ] || echo "$*" >> "{log}"\nexec "{cosign_bin}" "$@"\n'
    )
    spy.chmod(0o755)
    signer = make_signer(spy, registry, keypair)
    with pytest.raises(ConfigError, match=r"annotations\["):
        signer.sign_image(
            f"{registry.host}/app@sha256:{'0' * 64}", key="prod", annotations=annotations
        )
    assert not log.exists()
