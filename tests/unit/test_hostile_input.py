"""Hostile input: annotations and config documents are rejected, or passed safely, in bounded time.

References have their own property tests in test_reference.py; the real cosign signing hostile
but valid annotations is in tests/test_annotations.py.
"""

from __future__ import annotations

import contextlib
import csv
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cosign_signer import Config, ConfigError, CosignCapabilities, CosignCommandBuilder
from tests.unit.test_command import HELP_2, HELP_3, KEY, REF

_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}
_HOSTILE = st.sampled_from(
    [
        "=",
        "-",
        "--",
        "\n",
        "\r",
        "\x00",
        " ",
        "a=b",
        "--key=/etc/passwd",
        "-a",
        "$(id)",
        "'",
        '"',
        "\\",
        "é",
        "\u2028",
    ]
)
_ANNOTATION_TEXT = st.lists(_HOSTILE | st.text(max_size=6), max_size=4).map("".join)


@settings(max_examples=400, deadline=None)
@given(
    annotations=st.dictionaries(_ANNOTATION_TEXT, _ANNOTATION_TEXT, max_size=4),
    help_text=st.sampled_from([HELP_2, HELP_3]),
)
def test_annotations_are_rejected_or_passed_as_one_key_value_argument_each(
    annotations: dict[str, str], help_text: str
) -> None:
    builder = CosignCommandBuilder(Config.from_dict({}), CosignCapabilities.from_help(help_text))
    try:
        argv = builder.sign(KEY, [REF], annotations=annotations).argv
    except ConfigError as exc:
        problems = exc.problems
        assert all(problem.startswith("annotations[") for problem in problems)
        return
    separator = argv.index("--")
    assert argv[separator + 1 :] == (REF,)  # nothing can slip after the end of options
    items = [argv[i + 1] for i, arg in enumerate(argv[:separator]) if arg == "-a"]
    plain = builder.sign(KEY, [REF]).argv
    assert len(argv) == len(plain) + 2 * len(annotations)
    # cosign reads each -a as a CSV line (Go's encoding/csv, same rules as Python's default
    # dialect), then splits each field at '=' and wants exactly two parts.
    fields = [field for item in items for field in next(csv.reader([item]))]
    assert [tuple(f.split("=")) for f in fields] == sorted(annotations.items())
    for key, value in annotations.items():
        assert key
        assert not key.startswith("-")
        assert not (_CONTROL & set(key + value))


def _bomb(levels: int = 9) -> list[str]:
    """A "billion laughs" document: 10**levels leaves through anchors and aliases."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return lines


_FIELDS = [field.name for field in attrs.fields(Config)]
_BOMBS = {
    **{f"field-{name}": f"cosign_signer:\n  {name}: *a9\n" for name in _FIELDS},
    "section": "cosign_signer: *a9\n",
    "env-value": "cosign_signer:\n  env_variables:\n    MY_TOKEN: *a9\n",
    "alias-value": "cosign_signer:\n  key_aliases:\n    prod: *a9\n",
    "recursive-section": "cosign_signer: &s\n  key_aliases: *s\n  env_variables: *s\n",
    "recursive-list": "cosign_signer:\n  key_aliases: &r [*r]\n",
    "merge-keys": "m: &m {timeout: *a9, retries: *a9}\ncosign_signer:\n  <<: *m\n",
    "deep-list": "cosign_signer:\n  key_aliases: " + "[" * 100_000 + "]" * 100_000 + "\n",
    "deep-mapping": "cosign_signer:\n  key_aliases: " + "{a: " * 50_000 + "x" + "}" * 50_000 + "\n",
    "huge-key": "cosign_signer:\n  " + "k" * 900_000 + ": 1\n",
    "huge-value": "cosign_signer:\n  registry_user: " + "u" * 900_000 + "\n",
    "over-the-size-limit": "cosign_signer:\n  registry_user: " + "u" * (1 << 20) + "\n",
}


def _write(document: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{document}.yaml"
    path.write_text("\n".join(_bomb()) + "\n" + _BOMBS[document])
    return path


@pytest.mark.parametrize("document", list(_BOMBS))
def test_bombs_and_monsters_are_rejected_in_bounded_time(document: str, tmp_path: Path) -> None:
    path = _write(document, tmp_path)
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        Config.from_file(path)
    elapsed = time.monotonic() - started
    assert str(path) in str(info.value)
    assert elapsed < 5.0, elapsed  # the deepest nesting takes ~1 s on one slow core


def test_bombs_are_rejected_within_bounded_memory(tmp_path: Path) -> None:
    # In a child whose address space is capped at 1 GiB: expanding any bomb would not fit.
    paths = [str(_write(document, tmp_path)) for document in _BOMBS]
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from cosign_signer import Config, ConfigError\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        Config.from_file(path)\n"
        "    except ConfigError:\n"
        "        print('rejected', path)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *paths],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("rejected ") == len(paths)


_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
_documents = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
_sections = st.dictionaries(
    st.sampled_from([*_FIELDS, "bogus", ""]) | st.text(max_size=8), _documents, max_size=8
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=st.one_of(_documents, _sections.map(lambda s: {"cosign_signer": s})))
def test_random_yaml_documents_give_a_config_or_a_config_error(
    document: object, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    try:
        config = Config.from_file(path)
    except ConfigError:
        return
    assert isinstance(config, Config)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_random_bytes_give_a_config_or_a_config_error(raw: bytes, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"cosign_signer:\n  " + raw)
    with contextlib.suppress(ConfigError):
        Config.from_file(path)
