"""The reference parser: the distribution grammar, and nothing cosign could mistake for a flag."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cosign_signer import InvalidReferenceError, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("127.0.0.1:5000/app:1.0", "127.0.0.1:5000", "app", "1.0", None),
        (f"localhost:5000/team/app@{DIGEST}", "localhost:5000", "team/app", None, DIGEST),
        (
            f"ghcr.io/org/sub/app:v1.2.3-rc.1@{DIGEST}",
            "ghcr.io",
            "org/sub/app",
            "v1.2.3-rc.1",
            DIGEST,
        ),
        ("alpine:3.20", "docker.io", "library/alpine", "3.20", None),
        ("user/app:latest", "docker.io", "user/app", "latest", None),
        (
            "registry.example.com/a__b.c-d/e:Tag_1",
            "registry.example.com",
            "a__b.c-d/e",
            "Tag_1",
            None,
        ),
        (f"[::1]:5000/app@{DIGEST}", "[::1]:5000", "app", None, DIGEST),
    ],
)
def test_valid_references(text: str, registry: str, repository: str, tag: str, digest: str) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )
    assert ref.original == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("-app:1", "must not start with '-'"),
        ("--key=/etc/passwd", "must not start with '-'"),
        ("reg.io/app :1", "whitespace"),
        ("reg.io/app:1\n", "whitespace"),
        ("reg.io/app:1\x00", "control"),
        ("reg.io/app", "needs a tag"),
        ("reg.io/App:1", "lower case"),
        ("reg.io/app@sha256:abc", "digest must be"),
        (f"reg.io/app@sha512:{'a' * 128}", "digest must be"),
        ("reg.io/app@SHA256:" + "A" * 64, "digest must be"),
        ("reg.io/app:-tag", "tag must be"),
        ("reg.io/app:" + "t" * 129, "tag must be"),
        ("reg.io/x:1", "at least 2 characters"),
        ("reg.io/app//x:1", "invalid repository path"),
        ("reg.io/:1", "invalid repository path"),
        ("ba-d_host-.io:5000/app:1", "invalid"),
    ],
)
def test_invalid_references(text: str, reason: str) -> None:
    with pytest.raises(InvalidReferenceError, match="invalid image reference") as info:
        parse_reference(text)
    assert reason in info.value.reason
    assert info.value.reference == text
    assert isinstance(info.value, ValueError)


def test_non_string_is_rejected() -> None:
    with pytest.raises(InvalidReferenceError, match="expected a string"):
        parse_reference(42)


def test_with_digest_keeps_the_name_as_written() -> None:
    ref = parse_reference("127.0.0.1:5000/team/app:1.0")
    assert ref.with_digest(DIGEST) == f"127.0.0.1:5000/team/app@{DIGEST}"
    assert ref.is_loopback
    assert not parse_reference("ghcr.io/a/b:1").is_loopback


@given(st.text(max_size=80))
def test_nothing_accepted_can_look_like_a_flag_or_hide_whitespace(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReferenceError:
        return
    assert not ref.original.startswith("-")
    assert not any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in ref.original)
    assert ref.tag is not None or ref.digest is not None


_component = st.from_regex(r"[a-z0-9]{1,8}([._-][a-z0-9]{1,8})?", fullmatch=True)
_host = st.sampled_from(["localhost:5000", "127.0.0.1:5000", "reg.example.com", "reg.io:443"])


@given(
    _host,
    st.lists(_component, min_size=1, max_size=4),
    st.none() | st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
    st.none() | st.from_regex(r"[a-f0-9]{64}", fullmatch=True),
)
def test_grammar_references_are_accepted(
    host: str, path: list[str], tag: str | None, hexdigest: str | None
) -> None:
    name = f"{host}/{'/'.join(path)}"
    if len("/".join(path)) < 2 or (tag is None and hexdigest is None):
        return
    text = name + (f":{tag}" if tag else "") + (f"@sha256:{hexdigest}" if hexdigest else "")
    ref = parse_reference(text)
    assert ref.registry == host
    assert ref.repository == "/".join(path)
    assert ref.tag == tag
