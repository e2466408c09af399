"""KeyAliasResolver: aliases to key references, with errors that say what is known."""

from __future__ import annotations

import pytest

from cosign_signer import ConfigError, KeyAliasResolver, UnknownKeyAliasError


def test_resolves_alias_and_shared_keys() -> None:
    resolver = KeyAliasResolver(
        {"prod": "/keys/a.key", "release": "/keys/a.key", "kms": "awskms:///alias/x"}
    )
    assert resolver.resolve("prod") == "/keys/a.key"
    assert resolver.aliases_for("/keys/a.key") == ("prod", "release")
    assert resolver.resolve_key("kms").is_kms
    assert not resolver.resolve_key("prod").is_kms


def test_unknown_alias_names_it_and_lists_known_ones() -> None:
    resolver = KeyAliasResolver({"prod": "/k1", "beta": "/k2"})
    with pytest.raises(UnknownKeyAliasError) as info:
        resolver.resolve("prdo")
    assert str(info.value) == (
        "invalid cosign_signer configuration: key_aliases: unknown key alias 'prdo' "
        "(did you mean 'prod'?); known aliases: beta, prod"
    )
    assert info.value.alias == "prdo"
    assert info.value.known == ("beta", "prod")
    assert isinstance(info.value, ConfigError)


def test_no_aliases_configured() -> None:
    with pytest.raises(UnknownKeyAliasError, match=r"known aliases: \(none configured\)"):
        KeyAliasResolver({}).resolve("prod")
