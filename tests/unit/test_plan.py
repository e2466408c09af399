"""plan_sign: the commands sign_images would run, computed without a process or network."""

from __future__ import annotations

import os

from cosign_signer import Config, CosignCapabilities, CosignCommandBuilder, PlannedCommand
from cosign_signer.keys import ResolvedKey
from cosign_signer.plan import plan_sign
from cosign_signer.reference import parse_reference

SIGN_2 = "  --key='':\n  --tlog-upload=true:\n  --upload=true:\n  -r, --recursive=false:"
SIGN_3 = "  --key='':\n  --use-signing-config=true:\n  --upload=true:\n  -r, --recursive=false:"
KEY = ResolvedKey("prod", "/keys/prod.key")
HOST = "127.0.0.1:5000"


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def plan(refs: list[str], help_text: str = SIGN_2, **kwargs: object) -> list[PlannedCommand]:
    config = Config.from_dict(
        {"env_variables": {"COSIGN_PASSWORD": "key-pw"}, "registry_user": "ci",
         "registry_password": "reg-pw"}
    )  # fmt: skip
    options: dict[str, object] = {"workers": 2, "credentials": True}
    options.update(kwargs)
    return plan_sign(
        [parse_reference(r) for r in refs],
        builder=CosignCommandBuilder(config, CosignCapabilities.from_help(help_text)),
        key=KEY,
        binary="/usr/bin/cosign",
        secrets=config.secret_values,
        **options,  # type: ignore[arg-type]
    )


def test_chunks_like_sign_images_and_dedupes_digests() -> None:
    refs = [f"{HOST}/app@{digest(i)}" for i in range(5)]
    # the same digest under a tag+digest spelling is one target: signed once
    commands = plan([*refs, f"{HOST}/app:v1@{digest(0)}"], workers=2)
    assert [c.argv[c.argv.index("--") + 1 :] for c in commands] == [
        tuple(refs[:3]),
        tuple(refs[3:]),
    ]
    # the duplicate is reported with the command that signs its digest
    assert commands[0].references == (refs[0], f"{HOST}/app:v1@{digest(0)}", *refs[1:3])
    assert commands[1].references == tuple(refs[3:])
    assert all(c.env_names == ("COSIGN_PASSWORD", "DOCKER_CONFIG") for c in commands)


def test_one_worker_one_command_and_limit_of_200() -> None:
    refs = [f"{HOST}/app@{digest(i)}" for i in range(450)]
    sizes = [len(c.references) for c in plan(refs, workers=1)]
    assert sizes == [200, 200, 50]


def test_tags_are_shown_as_written_and_listed_unresolved() -> None:
    commands = plan([f"{HOST}/app:1.2", f"{HOST}/app@{digest(7)}"], workers=1)
    (command,) = commands
    assert command.argv[-2:] == (f"{HOST}/app:1.2", f"{HOST}/app@{digest(7)}")
    assert command.unresolved == (f"{HOST}/app:1.2",)


def test_no_secret_in_a_plan_and_no_docker_config_without_credentials() -> None:
    (command,) = plan([f"{HOST}/app@{digest(1)}"], workers=1)
    text = repr(command)
    assert "key-pw" not in text
    assert "reg-pw" not in text
    (bare,) = plan([f"{HOST}/app@{digest(1)}"], workers=1, credentials=False)
    assert bare.env_names == ("COSIGN_PASSWORD",)


def test_upload_false_and_recursive_per_generation() -> None:
    (two,) = plan([f"{HOST}/app@{digest(1)}"], SIGN_2, upload=False, recursive=True)
    (three,) = plan([f"{HOST}/app@{digest(1)}"], SIGN_3, upload=False, recursive=True)
    assert "--upload=false" in two.argv
    assert "--recursive" in two.argv
    assert not any(a.startswith("--bundle") for a in two.argv)
    assert f"--bundle={os.devnull}" in three.argv
    assert "--use-signing-config=false" in three.argv


def test_empty_plan() -> None:
    assert plan([]) == []
