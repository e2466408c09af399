"""Config loading: strict types, every problem at once, field paths, secrets masked."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cosign_signer import Config, ConfigError

GOOD = {
    "rekor_url": "https://rekor.example.com/",
    "upload_tlog": True,
    "registry_user": "ci",
    "registry_password": "s3cret-pw",
    "log_level": "debug",
    "env_variables": {"COSIGN_PASSWORD": "key-pw", "HTTPS_PROXY": "http://proxy:3128"},
    "key_aliases": {
        "prod": "/keys/prod.key",
        "release": "/keys/prod.key",
        "kms": "awskms:///alias/k",
    },
    "timeout": 60,
    "retries": 0,
    "max_workers": 2,
}


def test_good_config_round_trip() -> None:
    config = Config.from_dict(GOOD)
    assert config.rekor_url == "https://rekor.example.com"
    assert config.log_level == "DEBUG"
    assert config.log_level_number == logging.DEBUG
    assert config.timeout == 60.0
    assert config.key_aliases["release"] == "/keys/prod.key"
    assert set(config.secret_values) == {"s3cret-pw", "key-pw"}


def test_defaults() -> None:
    config = Config.from_dict({})
    assert (config.upload_tlog, config.log_level, config.timeout, config.retries) == (
        False,
        "INFO",
        300.0,
        3,
    )
    assert config.cosign_binary == "cosign"
    assert not config.allow_http_registry


def test_repr_hides_secrets() -> None:
    text = repr(Config.from_dict(GOOD))
    assert "s3cret-pw" not in text
    assert "key-pw" not in text
    assert "http://proxy:3128" in text  # not a secret by name


def test_every_problem_reported_with_its_path() -> None:
    bad = {
        "upload_tlog": "yes",
        "log_level": "verbose",
        "timeout": 0,
        "retries": True,
        "registry_user": "u",
        "key_aliases": {"prod": 3},
        "env_variables": {"BAD NAME": "x", "COSIGN_PASSWORD": 1234},
        "timout": 5,
    }
    with pytest.raises(ConfigError) as info:
        Config.from_dict(bad)
    problems = info.value.problems
    assert any(p.startswith("upload_tlog: expected a boolean") for p in problems)
    assert any(p.startswith("log_level: expected one of DEBUG") for p in problems)
    assert any(p.startswith("timeout: must be greater than 0") for p in problems)
    assert any(p.startswith("retries: expected a whole number, got a boolean") for p in problems)
    assert any(
        p.startswith("registry_password: registry_user and registry_password go together")
        for p in problems
    )
    assert any(p.startswith("key_aliases['prod']: expected a string") for p in problems)
    assert any(p.startswith("env_variables['BAD NAME']:") for p in problems)
    assert any(
        p.startswith("env_variables['COSIGN_PASSWORD']: expected a string") for p in problems
    )
    assert any(p.startswith("timout: unknown key (did you mean 'timeout'?)") for p in problems)
    assert "1234" not in str(info.value)  # a secret's value is never echoed
    assert str(info.value).startswith("invalid cosign_signer configuration (9 problems):\n  - ")


def test_upload_tlog_needs_rekor_url() -> None:
    with pytest.raises(ConfigError, match="rekor_url: required when upload_tlog is true"):
        Config.from_dict({"upload_tlog": True})


def test_rekor_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match="rekor_url: expected an http"):
        Config.from_dict({"rekor_url": "ftp://user:pw@rekor"})


def test_placeholders_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CS_TEST_PW", "from-env")
    config = Config.from_dict(
        {
            "registry_user": "u",
            "registry_password": "${CS_TEST_PW}",
            "env_variables": {"COSIGN_PASSWORD": "${CS_TEST_PW}"},
        }
    )
    assert config.registry_password == "from-env"
    assert config.env_variables["COSIGN_PASSWORD"] == "from-env"


def test_unset_placeholder_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CS_TEST_UNSET", raising=False)
    with pytest.raises(
        ConfigError,
        match=r"key_aliases\['prod'\]: environment variable \$\{CS_TEST_UNSET\} is not set",
    ):
        Config.from_dict({"key_aliases": {"prod": "${CS_TEST_UNSET}"}})


def test_section_must_be_mapping() -> None:
    with pytest.raises(ConfigError, match="section must be a mapping, got a list"):
        Config.from_dict(["a"])


def test_from_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump({"other_tool": {"x": 1}, "cosign_signer": {"key_aliases": {"prod": "/k"}}})
    )
    assert Config.from_file(path).key_aliases == {"prod": "/k"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found"),
        ("cosign_signer: [unclosed\n", "YAML syntax error at line"),
        ("other: {}\n", "no 'cosign_signer:' section"),
        ("- a\n- b\n", "no 'cosign_signer:' section"),
        ("cosign_signer: 3\n", "section must be a mapping, got an integer"),
        ("cosign_signer:\n  upload_tlog: 1\n", "upload_tlog: expected a boolean"),
    ],
)
def test_file_faults_name_file_and_field(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "config.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        Config.from_file(path)
    assert str(path) in str(info.value)


def test_warns_when_password_file_is_group_readable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("cosign_signer:\n  registry_user: u\n  registry_password: pw-value\n")
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="cosign_signer"):
        Config.from_file(path)
    assert "readable by group or others" in caplog.text
    assert "pw-value" not in caplog.text
    caplog.clear()
    os.chmod(path, 0o600)
    with caplog.at_level(logging.WARNING, logger="cosign_signer"):
        Config.from_file(path)
    assert "readable" not in caplog.text


def test_billion_laughs_is_bounded(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\ncosign_signer:\n  key_aliases: *a8\n")
    with pytest.raises(ConfigError, match="key_aliases: expected a mapping"):
        Config.from_file(path)


_yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(
    [
        "rekor_url",
        "upload_tlog",
        "registry_user",
        "registry_password",
        "log_level",
        "env_variables",
        "key_aliases",
        "timeout",
        "retries",
        "max_workers",
        "bogus",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _yaml_values, max_size=8))
def test_fuzzed_sections_give_config_or_config_error(section: dict[str, object]) -> None:
    with contextlib.suppress(ConfigError):
        Config.from_dict(section)


def test_placeholder_password_file_needs_no_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CS_TEST_PW", "x")
    path = tmp_path / "config.yaml"
    path.write_text("cosign_signer:\n  registry_user: u\n  registry_password: ${CS_TEST_PW}\n")
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="cosign_signer"):
        Config.from_file(path)
    assert "readable" not in caplog.text
