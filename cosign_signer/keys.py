"""The KeyAliasResolver: from the alias a caller names to the key reference cosign is given."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

import attrs

from cosign_signer.config import KMS_SCHEMES
from cosign_signer.errors import UnknownKeyAliasError

__all__ = ["KeyAliasResolver", "ResolvedKey"]


@attrs.frozen
class ResolvedKey:
    """An alias and the key it names: a file path or a KMS URI (``awskms://``, ``pkcs11:``, …)."""

    alias: str
    reference: str

    @property
    def is_kms(self) -> bool:
        """Whether cosign reaches this key through a KMS or token rather than a key file."""
        return self.reference.startswith(KMS_SCHEMES)


class KeyAliasResolver:
    """Map key aliases to key references; one key may serve several aliases.

    >>> KeyAliasResolver({"prod": "/keys/a.key"}).resolve("prod")
    '/keys/a.key'
    """

    def __init__(self, aliases: Mapping[str, str]) -> None:
        self._aliases = dict(aliases)

    def __repr__(self) -> str:
        return f"KeyAliasResolver(aliases={sorted(self._aliases)!r})"

    @property
    def aliases(self) -> tuple[str, ...]:
        """The known aliases, sorted."""
        return tuple(sorted(self._aliases))

    def resolve(self, alias: str) -> str:
        """Return the key reference for ``alias`` or raise :class:`UnknownKeyAliasError`."""
        return self.resolve_key(alias).reference

    def resolve_key(self, alias: str) -> ResolvedKey:
        """Like :meth:`resolve`, returning the alias with its key."""
        try:
            return ResolvedKey(alias=alias, reference=self._aliases[alias])
        except (KeyError, TypeError):
            close = difflib.get_close_matches(str(alias), self._aliases, n=1)
            raise UnknownKeyAliasError(
                str(alias), self._aliases, suggestion=close[0] if close else None
            ) from None

    def aliases_for(self, reference: str) -> tuple[str, ...]:
        """Every alias that names the key ``reference``."""
        return tuple(sorted(a for a, r in self._aliases.items() if r == reference))
