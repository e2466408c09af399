"""The Config loader: the ``cosign_signer`` section of a YAML file, checked all at once.

Built from attrs classes and a private, strict cattrs converter: unknown keys are errors (typos
are caught), an int is never taken for a string, and every problem is reported in one
:class:`ConfigError` whose lines start with the field path (``upload_tlog``,
``key_aliases['prod']``).  Any string value may be ``${NAME}``, filled from the environment at
load time.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import re
import stat
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NewType, TypeVar

if TYPE_CHECKING:
    import cattrs
    from cattrs.errors import ClassValidationError

# cattrs and yaml are imported where they are used: `import cosign_signer` stays fast.

import attrs

from cosign_signer.errors import ConfigError

__all__ = ["KMS_SCHEMES", "LOG_LEVELS", "SECTION", "Config"]

_log = logging.getLogger("cosign_signer")

SECTION = "cosign_signer"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Key references that cosign resolves through a KMS (or a token) rather than a file.
KMS_SCHEMES = ("awskms://", "gcpkms://", "azurekms://", "hashivault://", "k8s://", "pkcs11:")
_SECRET_NAME = re.compile(r"PASS|TOKEN|SECRET|KEY|CREDENTIAL|AUTH", re.IGNORECASE)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MAX_CONFIG_BYTES = 1 << 20

LogLevel = NewType("LogLevel", str)
HttpUrl = NewType("HttpUrl", str)
PositiveFloat = NewType("PositiveFloat", float)
NonNegativeInt = NewType("NonNegativeInt", int)
PositiveInt = NewType("PositiveInt", int)
EnvName = NewType("EnvName", str)
NonEmptyStr = NewType("NonEmptyStr", str)
RekorApiVersion = NewType("RekorApiVersion", int)
EnvVariables = NewType("EnvVariables", dict[str, str])
KeyAliases = NewType("KeyAliases", dict[str, str])


def _hidden(value: object) -> str:
    return "None" if value is None else "'***'"


def _env_repr(env: Mapping[str, str]) -> str:
    shown = {k: ("***" if _SECRET_NAME.search(k) else v) for k, v in env.items()}
    return repr(shown)


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name suggests its value is a secret."""
    return bool(_SECRET_NAME.search(name))


def _env_variables(value: Mapping[str, str]) -> EnvVariables:
    return EnvVariables(dict(value))


def _key_aliases(value: Mapping[str, str]) -> KeyAliases:
    return KeyAliases(dict(value))


@attrs.frozen(kw_only=True)
class Config:
    """The ``cosign_signer`` configuration. Build it with :meth:`from_file` or :meth:`from_dict`.

    Secrets (``registry_password`` and the values of ``env_variables`` whose names suggest a
    secret) are masked in ``repr``.
    """

    rekor_url: HttpUrl | None = None
    rekor_public_key: NonEmptyStr | None = None
    rekor_api_version: RekorApiVersion | None = None
    upload_tlog: bool = False
    registry_user: NonEmptyStr | None = None
    registry_password: NonEmptyStr | None = attrs.field(default=None, repr=_hidden)
    log_level: LogLevel = LogLevel("INFO")
    env_variables: EnvVariables = attrs.field(
        factory=lambda: EnvVariables({}), converter=_env_variables, repr=_env_repr
    )
    key_aliases: KeyAliases = attrs.field(factory=lambda: KeyAliases({}), converter=_key_aliases)
    cosign_binary: NonEmptyStr = NonEmptyStr("cosign")
    timeout: PositiveFloat = PositiveFloat(300.0)
    retries: NonNegativeInt = NonNegativeInt(3)
    retry_backoff: PositiveFloat = PositiveFloat(1.0)
    max_workers: PositiveInt | None = None
    allow_http_registry: bool = False
    allow_insecure_registry: bool = False

    @classmethod
    def from_dict(cls, data: object, *, source: str | None = None) -> Config:
        """Build a Config from the section's mapping; :class:`ConfigError` lists all problems."""
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"the {SECTION} section must be a mapping, got {_type_name(data)}", source=source
            )
        problems: list[str] = []
        known = {field.name for field in attrs.fields(cls)}
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"{key}: unknown key{hint}; known keys: {', '.join(sorted(known))}")
        data = {k: v for k, v in data.items() if k in known}
        expanded = _expand_placeholders(data, problems)
        problems.extend(_cross_field_problems(expanded))
        from cattrs.errors import ClassValidationError  # noqa: PLC0415

        config: Config | None = None
        try:
            config = _converter().structure(expanded, cls)
        except ClassValidationError as exc:
            problems[:0] = _format_cattrs_errors(exc)
        if problems or config is None:
            raise ConfigError(_dedupe(problems), source=source)
        return config

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Config:
        """Read the ``cosign_signer`` section of the YAML file at ``path``."""
        file = Path(path)
        source = str(file)
        try:
            with file.open("rb") as handle:
                raw = handle.read(_MAX_CONFIG_BYTES + 1)
                mode = os.fstat(handle.fileno()).st_mode
        except FileNotFoundError:
            raise ConfigError("file not found", source=source) from None
        except IsADirectoryError:
            raise ConfigError("is a directory, not a file", source=source) from None
        except OSError as exc:
            raise ConfigError(f"cannot read file: {exc.strerror}", source=source) from None
        if len(raw) > _MAX_CONFIG_BYTES:
            raise ConfigError(f"file larger than {_MAX_CONFIG_BYTES} bytes", source=source)
        import yaml  # noqa: PLC0415

        try:
            document = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            where = ""
            mark = getattr(exc, "problem_mark", None)
            if mark is not None:
                where = f" at line {mark.line + 1}, column {mark.column + 1}"
            problem = getattr(exc, "problem", None) or "not valid YAML"
            raise ConfigError(f"YAML syntax error{where}: {problem}", source=source) from None
        except RecursionError:
            # PyYAML composes nested collections recursively: "[[[[…" a few thousand deep.
            raise ConfigError("YAML nested too deeply", source=source) from None
        if not isinstance(document, Mapping) or SECTION not in document:
            raise ConfigError(f"no '{SECTION}:' section at the top level", source=source)
        section = document[SECTION]
        if isinstance(section, Mapping) and _holds_literal_secret(section.get("registry_password")):
            _warn_if_readable(source, mode)
        return cls.from_dict(section, source=source)

    @property
    def secret_values(self) -> tuple[str, ...]:
        """Every configured value that must never be shown (for redaction)."""
        values = [self.registry_password or ""]
        values += [v for k, v in self.env_variables.items() if is_secret_name(k)]
        return tuple(v for v in values if v)

    @property
    def log_level_number(self) -> int:
        """The ``logging`` level number of ``log_level``."""
        return int(logging.getLevelName(self.log_level))


def _holds_literal_secret(value: object) -> bool:
    """A password written into the file itself (not only a ``${NAME}`` placeholder)."""
    return isinstance(value, str) and bool(_PLACEHOLDER.sub("", value).strip())


def _warn_if_readable(source: str, mode: int) -> None:
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        _log.warning(
            "config file %s holds registry_password but is readable by group or others "
            "(mode %o); run: chmod 600 %s",
            source,
            stat.S_IMODE(mode),
            source,
        )


def _type_name(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        type(None): "nothing (null)",
    }
    return names.get(type(value), type(value).__name__)


def _expand_placeholders(data: Mapping[Any, Any], problems: list[str]) -> dict[Any, Any]:
    """Fill ``${NAME}`` in string values (top level and one mapping level down) from os.environ."""

    def fill(value: object, path: str) -> object:
        if not isinstance(value, str) or "${" not in value:
            return value

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                problems.append(f"{path}: environment variable ${{{name}}} is not set")
                return ""
            return os.environ[name]

        return _PLACEHOLDER.sub(sub, value)

    out: dict[Any, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out[key] = {k: fill(v, f"{key}[{k!r}]") for k, v in value.items()}
        else:
            out[key] = fill(value, str(key))
    return out


def _cross_field_problems(data: Mapping[Any, Any]) -> list[str]:
    problems = []
    user, password = data.get("registry_user"), data.get("registry_password")
    if (user is None) != (password is None):
        missing = "registry_password" if password is None else "registry_user"
        problems.append(
            f"{missing}: registry_user and registry_password go together; set both or neither"
        )
    if data.get("upload_tlog") is True and not data.get("rekor_url"):
        problems.append("rekor_url: required when upload_tlog is true")
    return problems


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# ---- the private, strict converter -------------------------------------------------------------

_T = TypeVar("_T")


def _check(kind: type[_T], expected: str) -> Callable[[object, object], _T]:
    def hook(value: object, _type: object) -> _T:
        if type(value) is not kind:
            raise TypeError(f"expected {expected}, got {_type_name(value)}")
        assert isinstance(value, kind)  # noqa: S101 - narrows the type for mypy
        return value

    return hook


def _float(value: object, _type: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {_type_name(value)}")
    return float(value)


def _non_empty(value: object, _type: object) -> NonEmptyStr:
    text = _check(str, "a string")(value, _type)
    if not text.strip():
        raise ValueError("must not be empty")
    return NonEmptyStr(text)


def _log_level(value: object, _type: object) -> LogLevel:
    text = _check(str, "a string")(value, _type).upper()
    if text not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)} (any case), got {value!r}")
    return LogLevel(text)


def _http_url(value: object, _type: object) -> HttpUrl:
    text = _check(str, "a string")(value, _type)
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise ValueError("expected an http:// or https:// URL with a host")
    if "," in text or parsed.username or parsed.password:
        raise ValueError("must not contain ',' or credentials")
    return HttpUrl(text.rstrip("/"))


def _positive_float(value: object, _type: object) -> PositiveFloat:
    number = _float(value, _type)
    if not number > 0:
        raise ValueError(f"must be greater than 0, got {value!r}")
    return PositiveFloat(number)


def _non_negative_int(value: object, _type: object) -> NonNegativeInt:
    number = _check(int, "a whole number")(value, _type)
    if number < 0:
        raise ValueError(f"must be 0 or more, got {number}")
    return NonNegativeInt(number)


def _positive_int(value: object, _type: object) -> PositiveInt:
    number = _check(int, "a whole number")(value, _type)
    if number < 1:
        raise ValueError(f"must be 1 or more, got {number}")
    return PositiveInt(number)


def _rekor_api_version(value: object, _type: object) -> RekorApiVersion:
    number = _check(int, "a whole number")(value, _type)
    if number not in {1, 2}:
        raise ValueError(f"expected 1 (rekor-server) or 2 (rekor-tiles), got {number}")
    return RekorApiVersion(number)


def _env_name(value: object, _type: object) -> EnvName:
    text = _check(str, "a string")(value, _type)
    if not _ENV_NAME.fullmatch(text):
        raise ValueError(f"{text!r} is not a valid environment variable name")
    return EnvName(text)


def _env_value(value: object, _type: object) -> str:
    # Never show the value: it may be a secret.
    if type(value) is not str:
        raise TypeError(f"expected a string (quote numbers and booleans), got {_type_name(value)}")
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


@functools.cache
def _converter() -> cattrs.Converter:
    """The private, strict converter (built on first use)."""
    import cattrs  # noqa: PLC0415

    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(bool, _check(bool, "a boolean (true or false)"))
    converter.register_structure_hook(int, _check(int, "a whole number"))
    converter.register_structure_hook(float, _float)
    converter.register_structure_hook(str, _env_value)
    for new_type, hook in (
        (NonEmptyStr, _non_empty),
        (LogLevel, _log_level),
        (HttpUrl, _http_url),
        (PositiveFloat, _positive_float),
        (NonNegativeInt, _non_negative_int),
        (PositiveInt, _positive_int),
        (EnvName, _env_name),
        (RekorApiVersion, _rekor_api_version),
    ):
        converter.register_structure_hook(new_type, hook)
    converter.register_structure_hook(EnvVariables, _mapping_hook(_env_name, _env_value))
    converter.register_structure_hook(KeyAliases, _mapping_hook(_non_empty, _non_empty))
    return converter


def _mapping_hook(
    key_hook: Callable[[object, object], str], value_hook: Callable[[object, object], str]
) -> Callable[[object, object], dict[str, str]]:
    def hook(value: object, _type: object) -> dict[str, str]:
        from cattrs.errors import IterableValidationError, IterableValidationNote  # noqa: PLC0415

        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a mapping, got {_type_name(value)}")
        out: dict[str, str] = {}
        errors: list[Exception] = []
        for key, item in value.items():
            try:
                out[key_hook(key, str)] = value_hook(item, str)
            except Exception as exc:  # noqa: BLE001 - collected and re-raised as one group below
                exc.__notes__ = [
                    IterableValidationNote(f"Structuring mapping @ key {key!r}", key, str)
                ]
                errors.append(exc)
        if errors:
            raise IterableValidationError("invalid mapping entries", errors, dict)
        return out

    return hook


def _format_cattrs_errors(exc: ClassValidationError) -> list[str]:
    import cattrs  # noqa: PLC0415

    problems = []
    for message in cattrs.transform_error(exc, path="$", format_exception=_format_exception):
        text, _, where = message.rpartition(" @ ")
        path = where.removeprefix("$.").removeprefix("$")
        problems.append(f"{path}: {text}" if path else text)
    return problems


def _format_exception(exc: BaseException, _type: type | None) -> str:
    from cattrs.errors import ForbiddenExtraKeysError  # noqa: PLC0415

    if isinstance(exc, ForbiddenExtraKeysError):
        return f"unknown key(s) {', '.join(sorted(map(str, exc.extra_fields)))}; check the spelling"
    if isinstance(exc, KeyError):
        return "required field missing"
    return str(exc) or type(exc).__name__
