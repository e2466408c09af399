"""CosignCommandBuilder: argv for both cosign generations, no secret on argv."""

from __future__ import annotations

import pytest

from cosign_signer import (
    Config,
    ConfigError,
    CosignCapabilities,
    CosignCommandBuilder,
    InvalidReferenceError,
)
from cosign_signer.keys import ResolvedKey

# Flags as `cosign sign --help` lists them (trimmed): 2.x has --rekor-url, 3.x --use-signing-config.
HELP_2 = "  --key='':\n  --tlog-upload=true:\n  --rekor-url='https://rekor.sigstore.dev':\n  --allow-http-registry=false:\n  -t, --timeout duration"
HELP_3 = "  cosign sign --key cosign.key --tlog-upload=false <IMAGE DIGEST>\n  --key='':\n  --use-signing-config=true:\n  --signing-config='':\n  --bundle='':\n  -t, --timeout duration"
REF = "127.0.0.1:5000/app@sha256:" + "ab" * 32
KEY = ResolvedKey(alias="prod", reference="/keys/prod.key")
SECRETS = {
    "registry_user": "ci",
    "registry_password": "reg-pw",
    "env_variables": {"COSIGN_PASSWORD": "key-pw"},
}


def build(help_text: str, **config: object) -> tuple[str, ...]:
    builder = CosignCommandBuilder(
        Config.from_dict(config), CosignCapabilities.from_help(help_text)
    )
    return builder.sign(KEY, [REF], annotations={"tag": "1.2", "git/sha": "abc,def"}).argv


def test_cosign2_without_tlog() -> None:
    assert build(HELP_2, timeout=60) == (
        "cosign",
        "sign",
        "--key",
        "/keys/prod.key",
        "-y",
        "--tlog-upload=false",
        "--timeout=55s",
        "-a",
        '"git/sha=abc,def"',  # quoted: cosign reads -a as CSV
        "-a",
        "tag=1.2",
        "--",
        REF,
    )


def test_cosign2_with_tlog_names_rekor() -> None:
    argv = build(HELP_2, upload_tlog=True, rekor_url="http://127.0.0.1:3000")
    assert "--tlog-upload=true" in argv
    assert "--rekor-url=http://127.0.0.1:3000" in argv


def test_cosign3_disables_signing_config_for_no_tlog() -> None:
    argv = build(HELP_3, timeout=60)
    assert argv[:7] == (
        "cosign",
        "sign",
        "--key",
        "/keys/prod.key",
        "-y",
        "--use-signing-config=false",
        "--tlog-upload=false",
    )
    assert not any(a.startswith("--rekor-url") for a in argv)


def test_generation_detected_from_help_not_version() -> None:
    assert CosignCapabilities.from_help(HELP_3).generation == "3.x"
    assert CosignCapabilities.from_help(HELP_2).generation == "2.x"
    assert CosignCapabilities.from_help(HELP_3).decrypts_key_per_reference


def test_no_flag_the_binary_lacks() -> None:
    argv = build("  --key='':\n  --tlog-upload=true:", allow_http_registry=True, timeout=60)
    assert not any(a.startswith(("--timeout", "--allow-http-registry")) for a in argv)
    assert "--allow-http-registry=true" in build(HELP_2, allow_http_registry=True)


@pytest.mark.parametrize("help_text", [HELP_2, HELP_3])
def test_secrets_travel_by_environment_only(help_text: str) -> None:
    builder = CosignCommandBuilder(
        Config.from_dict(SECRETS), CosignCapabilities.from_help(help_text)
    )
    command = builder.sign(KEY, [REF], docker_config_dir="/tmp/private-dir")
    joined = " ".join(command.argv)
    assert "reg-pw" not in joined
    assert "key-pw" not in joined
    assert "ci" not in command.argv
    assert command.env == {"COSIGN_PASSWORD": "key-pw", "DOCKER_CONFIG": "/tmp/private-dir"}
    assert "key-pw" not in repr(command)


def test_kms_key_passed_as_uri() -> None:
    builder = CosignCommandBuilder(Config.from_dict({}), CosignCapabilities.from_help(HELP_2))
    argv = builder.sign(ResolvedKey("kms", "awskms:///alias/release"), [REF]).argv
    assert argv[2:4] == ("--key", "awskms:///alias/release")


@pytest.mark.parametrize(
    "annotations",
    [{"-a": "x"}, {"a=b": "x"}, {"a b": "x"}, {"": "x"}, {"k": "line\nbreak"}, {"k": "nul\x00"}],
)
def test_unsafe_annotations_rejected(annotations: dict[str, str]) -> None:
    builder = CosignCommandBuilder(Config.from_dict({}), CosignCapabilities.from_help(HELP_2))
    with pytest.raises(ConfigError, match="annotations"):
        builder.sign(KEY, [REF], annotations=annotations)


def test_leading_dash_value_is_safe_inside_the_pair() -> None:
    builder = CosignCommandBuilder(Config.from_dict({}), CosignCapabilities.from_help(HELP_2))
    argv = builder.sign(KEY, [REF], annotations={"note": "--key /etc/passwd"}).argv
    assert argv[argv.index("-a") + 1] == "note=--key /etc/passwd"


def test_only_digest_references_reach_cosign() -> None:
    builder = CosignCommandBuilder(Config.from_dict({}), CosignCapabilities.from_help(HELP_2))
    with pytest.raises(InvalidReferenceError):
        builder.sign(KEY, ["127.0.0.1:5000/app:latest"])
    with pytest.raises(InvalidReferenceError):
        builder.sign(KEY, ["-" + REF])
