"""The ``cosign-signer`` command line (also ``python -m cosign_signer``).

Commands: ``sign``, ``sign-blob``, ``verify``, ``plan`` and ``config check``. References are
arguments, or ``-`` to read them from stdin (one per line; blank lines and ``#`` comments are
skipped). ``--json`` prints one JSON object per line: per reference (per file for ``sign-blob``,
per cosign command for ``plan``).

Exit codes: 0 everything succeeded; 1 some reference or file failed (the output says which and
why); 2 usage or configuration error (nothing was signed); 3 cosign cannot be run.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from cosign_signer import __version__, _process
from cosign_signer.blob import BlobSignResult
from cosign_signer.config import KMS_SCHEMES, Config
from cosign_signer.errors import (
    ArtifactNotFoundError,
    BatchSignError,
    ConfigError,
    CosignError,
    CosignNotFoundError,
    CosignSignerError,
    InvalidReferenceError,
)
from cosign_signer.plan import PlannedCommand
from cosign_signer.reference import parse_reference
from cosign_signer.signer import Signer, SignResult
from cosign_signer.verify import VerifyResult

__all__ = [
    "EXIT_COSIGN_MISSING",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "default_config_paths",
    "main",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_COSIGN_MISSING = 3
_INTERRUPTED = 130
PROG = "cosign-signer"
_CONFIG_NAME = "config.yaml"

Outcome = SignResult | VerifyResult | BlobSignResult | CosignSignerError


class UsageError(Exception):
    """The command line is wrong (exit 2)."""


def default_config_paths(environ: dict[str, str] | None = None) -> list[Path]:
    """Where the configuration is looked for without ``--config``, in order."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return [Path(_CONFIG_NAME), Path(xdg) / PROG / _CONFIG_NAME]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    out = _Output(json_lines=args.json, stdout=sys.stdout, stderr=sys.stderr)
    _setup_logging(args.verbose)
    try:
        return int(args.handler(args, out))
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        out.error(str(exc))
        return EXIT_USAGE
    except (ConfigError, InvalidReferenceError) as exc:
        out.error(str(exc))
        return EXIT_USAGE
    except CosignNotFoundError as exc:
        out.error(str(exc))
        return EXIT_COSIGN_MISSING
    except CosignSignerError as exc:
        out.error(f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        out.error("interrupted")
        return _INTERRUPTED


# ---- commands -----------------------------------------------------------------------------------


def _cmd_sign(args: argparse.Namespace, out: _Output) -> int:
    refs = _references(args.references)
    with _signer(args) as signer:
        key = _key(args, signer)
        progress = _Progress(out.stderr, total=len(dict.fromkeys(refs)), verb="signing")
        try:
            results = signer.sign_images(
                refs,
                key=key,
                annotations=_annotations(args.annotation),
                on_result=progress.step,
                skip_signed=args.skip_signed,
                upload=not args.no_upload,
                recursive=args.recursive,
            )
            failures: dict[str, CosignSignerError] = {}
        except BatchSignError as exc:
            results, failures = list(exc.results), exc.failures
        finally:
            progress.close()
    by_ref: dict[str, Outcome] = {r.reference: r for r in results}
    by_ref.update(failures)
    for ref in dict.fromkeys(refs):
        if ref in by_ref:
            out.outcome(ref, by_ref[ref])
    return EXIT_FAILED if failures else EXIT_OK


def _cmd_verify(args: argparse.Namespace, out: _Output) -> int:
    refs = list(dict.fromkeys(_references(args.references)))
    for ref in refs:
        parse_reference(ref)  # every reference is checked before anything runs
    with _signer(args) as signer:
        key = _key(args, signer)
        signer.capabilities()
        progress = _Progress(out.stderr, total=len(refs), verb="verifying")
        outcomes: dict[str, Outcome] = {}
        workers = min(len(refs), signer.config.max_workers or os.cpu_count() or 1)
        with cf.ThreadPoolExecutor(workers, thread_name_prefix="cli-verify") as pool:
            futures = {pool.submit(signer.verify_image, ref, key=key): ref for ref in refs}
            try:
                for future in cf.as_completed(futures):
                    ref = futures[future]
                    try:
                        outcomes[ref] = future.result()
                    except CosignError as exc:
                        outcomes[ref] = exc
                    progress.step(ref, outcomes[ref])
            finally:
                progress.close()
    for ref in refs:
        out.outcome(ref, outcomes[ref])
    return EXIT_OK if all(not isinstance(o, Exception) for o in outcomes.values()) else EXIT_FAILED


def _cmd_sign_blob(args: argparse.Namespace, out: _Output) -> int:
    files = list(dict.fromkeys(args.files))
    if args.bundle is not None and len(files) > 1:
        raise UsageError("--bundle names one bundle: give one file with it")
    outcomes: dict[str, Outcome] = {}
    with _signer(args) as signer:
        key = _key(args, signer)
        progress = _Progress(out.stderr, total=len(files), verb="signing")
        try:
            for file in files:
                try:
                    outcomes[file] = signer.sign_blob(file, key=key, bundle_path=args.bundle)
                except (ArtifactNotFoundError, CosignError) as exc:
                    outcomes[file] = exc
                progress.step(file, outcomes[file])
        finally:
            progress.close()
    for file, outcome in outcomes.items():
        out.outcome(file, outcome, field="path")
    return EXIT_OK if all(not isinstance(o, Exception) for o in outcomes.values()) else EXIT_FAILED


def _cmd_plan(args: argparse.Namespace, out: _Output) -> int:
    refs = _references(args.references)
    with _signer(args) as signer:
        commands = signer.plan(
            refs,
            key=_key(args, signer),
            annotations=_annotations(args.annotation),
            upload=not args.no_upload,
            recursive=args.recursive,
        )
    for command in commands:
        out.planned(command)
    return EXIT_OK


def _cmd_config_check(args: argparse.Namespace, out: _Output) -> int:
    path = _config_path(args.config)
    config = Config.from_file(path)
    problems = []
    for alias, reference in sorted(config.key_aliases.items()):
        if reference.startswith((*KMS_SCHEMES, "env://")):
            continue  # cosign reaches these itself; nothing to check on disk
        key_file = Path(reference)
        if not key_file.is_file():
            problems.append(f"key_aliases[{alias!r}]: key file {reference} does not exist")
        elif not os.access(key_file, os.R_OK):
            problems.append(f"key_aliases[{alias!r}]: key file {reference} is not readable")
    if not config.key_aliases:
        problems.append("key_aliases: no key alias is configured; nothing can be signed")
    report: dict[str, Any] = {
        "config": str(path),
        "key_aliases": dict(sorted(config.key_aliases.items())),
        "problems": problems,
    }
    try:
        binary = _process.find_executable(config.cosign_binary)
        caps = _process.probe_capabilities(binary)
    except CosignNotFoundError as exc:
        report.update(ok=False, cosign={"error": str(exc)})
        out.report(report)
        return EXIT_COSIGN_MISSING
    report.update(ok=not problems, cosign={"path": binary, "generation": caps.generation})
    out.report(report)
    return EXIT_USAGE if problems else EXIT_OK


# ---- helpers ------------------------------------------------------------------------------------


def _config_path(given: str | None) -> Path:
    if given:
        return Path(given)
    candidates = default_config_paths()
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = " and ".join(str(c) for c in candidates)
    raise ConfigError(f"no configuration file: looked for {looked}; pass --config PATH")


def _signer(args: argparse.Namespace) -> Signer:
    return Signer(Config.from_file(_config_path(args.config)))


def _key(args: argparse.Namespace, signer: Signer) -> str:
    """The alias to use: ``--key`` (checked now: exit 2 if unknown), or the only one configured."""
    if args.key:
        signer.key_resolver.resolve(args.key)
        return str(args.key)
    aliases = signer.key_resolver.aliases
    if len(aliases) == 1:
        return aliases[0]
    known = ", ".join(aliases) or "(none configured)"
    raise UsageError(f"--key ALIAS is required; known aliases: {known}")


def _references(given: Sequence[str], stdin: IO[str] | None = None) -> list[str]:
    refs: list[str] = []
    for item in given:
        if item == "-":
            for line in (stdin or sys.stdin).read().splitlines():
                text = line.strip()
                if text and not text.startswith("#"):
                    refs.append(text)
        else:
            refs.append(item)
    if not refs:
        raise UsageError("no references: give them as arguments, or '-' to read them from stdin")
    return refs


def _annotations(items: Sequence[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    annotations = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"annotation {item!r} must be KEY=VALUE")
        annotations[key] = value
    return annotations


def _setup_logging(verbosity: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    levels = {0: logging.WARNING, 1: logging.INFO}
    handler.setLevel(levels.get(verbosity, logging.DEBUG))
    logger = logging.getLogger("cosign_signer")
    logger.addHandler(handler)
    logger.propagate = False


class _Output:
    """Prints outcomes as text lines or JSON lines on stdout; errors on stderr."""

    def __init__(self, *, json_lines: bool, stdout: IO[str], stderr: IO[str]) -> None:
        self.json_lines = json_lines
        self.stdout = stdout
        self.stderr = stderr

    def error(self, message: str) -> None:
        print(f"{PROG}: error: {message}", file=self.stderr)

    def _emit(self, record: dict[str, Any], text: str) -> None:
        if self.json_lines:
            print(json.dumps(record, sort_keys=False), file=self.stdout, flush=True)
        else:
            print(text, file=self.stdout, flush=True)

    def outcome(self, name: str, outcome: Outcome, *, field: str = "reference") -> None:
        """One line for one reference (or file, ``field="path"``) and its result or error."""
        if isinstance(outcome, CosignSignerError):
            record = {field: name, "ok": False, "status": "failed", "error": _error(outcome)}
            first = str(outcome).splitlines()[0]
            self._emit(record, f"FAILED    {name}  {type(outcome).__name__}: {first}")
            if not self.json_lines:
                print(str(outcome), file=self.stderr)
            return
        if isinstance(outcome, SignResult):
            status = "skipped" if outcome.skipped else "signed"
            record = {
                "reference": name,
                "ok": True,
                "status": status,
                "digest": outcome.digest,
                "key": outcome.key,
                "tlog_index": outcome.tlog_index,
            }
            note = f"  (already signed with key {outcome.key})" if outcome.skipped else ""
            self._emit(record, f"{status:<9} {name}  {outcome.digest}{note}")
        elif isinstance(outcome, VerifyResult):
            record = {
                "reference": name,
                "ok": True,
                "status": "verified",
                "digest": outcome.digest,
                "key": outcome.key,
                "payloads": list(outcome.payloads),
            }
            count = len(outcome.payloads)
            self._emit(record, f"verified  {name}  {outcome.digest}  ({count} signature(s))")
        else:
            record = {
                "path": name,
                "ok": True,
                "status": "signed",
                "sha256": outcome.sha256,
                "bundle_path": str(outcome.bundle_path),
                "signature": outcome.signature,
                "tlog_index": outcome.tlog_index,
            }
            self._emit(
                record, f"signed    {name}  sha256:{outcome.sha256}  -> {outcome.bundle_path}"
            )

    def planned(self, command: PlannedCommand) -> None:
        record = {
            "argv": list(command.argv),
            "env_names": list(command.env_names),
            "references": list(command.references),
            "unresolved": list(command.unresolved),
        }
        lines = []
        if command.unresolved:
            lines.append(
                "# tags resolved to their digest at run time: " + " ".join(command.unresolved)
            )
        lines.append(f"# environment: {' '.join(command.env_names) or '(nothing extra)'}")
        lines.append(shlex.join(command.argv))
        self._emit(record, "\n".join(lines))

    def report(self, report: dict[str, Any]) -> None:
        lines = [f"config: {report['config']}"]
        for alias, reference in report["key_aliases"].items():
            lines.append(f"key alias {alias}: {reference}")
        cosign = report["cosign"]
        if "error" in cosign:
            lines.append(f"cosign: {cosign['error']}")
        else:
            lines.append(f"cosign: {cosign['path']} ({cosign['generation']})")
        lines += [f"problem: {p}" for p in report["problems"]]
        lines.append("ok" if report["ok"] else "NOT OK")
        self._emit(report, "\n".join(lines))


def _error(error: CosignSignerError) -> dict[str, Any]:
    record: dict[str, Any] = {"type": type(error).__name__, "message": str(error).splitlines()[0]}
    if isinstance(error, CosignError):
        record.update(
            exit_code=error.returncode,
            transient=error.transient,
            attempts=error.attempts,
            stderr=error.stderr,
        )
    return record


class _Progress:
    """``[3/10] signing …`` on one rewritten stderr line, only when stderr is a terminal."""

    def __init__(self, stream: IO[str], *, total: int, verb: str) -> None:
        self._stream = stream
        self._total = total
        self._verb = verb
        self._done = 0
        self._failed = 0
        self.enabled = total > 1 and _isatty(stream)

    def step(self, name: str, outcome: Outcome) -> None:
        self._done += 1
        self._failed += isinstance(outcome, Exception)
        if not self.enabled:
            return
        failed = f", {self._failed} failed" if self._failed else ""
        line = f"[{self._done}/{self._total}{failed}] {self._verb} {name}"
        self._stream.write(f"\r\x1b[2K{line}")
        self._stream.flush()

    def close(self) -> None:
        if self.enabled and self._done:
            self._stream.write("\r\x1b[2K")
            self._stream.flush()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _parser() -> argparse.ArgumentParser:
    def common(*, top: bool) -> argparse.ArgumentParser:
        # The same options before and after the command; after it, they override.
        default: Callable[[Any], Any] = (
            (lambda value: value) if top else (lambda _value: argparse.SUPPRESS)
        )
        parent = argparse.ArgumentParser(add_help=False)
        parent.add_argument(
            "--config",
            metavar="PATH",
            default=default(None),
            help=f"configuration file (default: ./{_CONFIG_NAME}, then "
            f"$XDG_CONFIG_HOME/{PROG}/{_CONFIG_NAME})",
        )
        parent.add_argument(
            "--json", action="store_true", default=default(False), help="one JSON object per line"
        )
        parent.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=default(0),
            help="log progress (-v) or debug details (-vv) on stderr",
        )
        return parent

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Sign container images and files with cosign, by key alias.",
        epilog="exit codes: 0 all succeeded, 1 some reference failed, 2 usage or configuration "
        "error, 3 cosign cannot be run",
        parents=[common(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    shared = [common(top=False)]

    def add(name: str, handler: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, parents=shared, help=help_text, description=help_text)
        command.set_defaults(handler=handler)
        return command

    def key_option(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--key", metavar="ALIAS", help="key alias (optional when only one is configured)"
        )

    def ref_options(command: argparse.ArgumentParser) -> None:
        key_option(command)
        command.add_argument(
            "-a",
            "--annotation",
            action="append",
            metavar="KEY=VALUE",
            help="annotation to sign with (repeatable)",
        )
        command.add_argument(
            "--no-upload",
            action="store_true",
            help="run cosign with --upload=false: prove key and inputs, write nothing",
        )
        command.add_argument(
            "--recursive",
            action="store_true",
            help="sign an image index and each of its child manifests",
        )
        command.add_argument("references", nargs="*", metavar="REF", help="image reference, or -")

    sign = add("sign", _cmd_sign, "sign image references")
    ref_options(sign)
    sign.add_argument(
        "--skip-signed",
        action="store_true",
        help="do not sign again what already verifies with the key",
    )
    plan = add("plan", _cmd_plan, "print the cosign commands 'sign' would run; run nothing")
    ref_options(plan)
    verify = add("verify", _cmd_verify, "verify image references against a key alias")
    key_option(verify)
    verify.add_argument("references", nargs="*", metavar="REF", help="image reference, or -")
    blob = add("sign-blob", _cmd_sign_blob, "sign files, writing a Sigstore bundle for each")
    key_option(blob)
    blob.add_argument(
        "--bundle", metavar="PATH", help="bundle path (one file only; default FILE.sigstore.json)"
    )
    blob.add_argument("files", nargs="+", metavar="FILE", help="file to sign")
    config = sub.add_parser("config", parents=shared, help="configuration commands")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    check = config_sub.add_parser(
        "check",
        parents=shared,
        help="load the configuration, check key files and find cosign",
        description="load the configuration, check key files and find cosign",
    )
    check.set_defaults(handler=_cmd_config_check)
    return parser
