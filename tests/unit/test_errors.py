"""The fixed layout of errors, pinned to the letter."""

from __future__ import annotations

from cosign_signer import BatchSignError, CosignError, RegistryAuthError, SignResult


def test_cosign_error_layout_is_fixed() -> None:
    err = RegistryAuthError(
        "signing reg.io/app:1 failed: UNAUTHORIZED: authentication required",
        reference="reg.io/app:1",
        argv=["cosign", "sign", "--key", "/k", "-y", "--", "reg.io/app@sha256:ab"],
        returncode=1,
        stderr="Pushing\nError: signing [reg.io/app@sha256:ab]: UNAUTHORIZED\n",
        attempts=2,
    )
    assert str(err) == (
        "signing reg.io/app:1 failed: UNAUTHORIZED: authentication required\n"
        "  reference: reg.io/app:1\n"
        "  attempts: 2\n"
        "  command: cosign sign --key /k -y -- reg.io/app@sha256:ab\n"
        "  exit code: 1\n"
        "  stderr:\n"
        "    Pushing\n"
        "    Error: signing [reg.io/app@sha256:ab]: UNAUTHORIZED"
    )
    assert not err.transient


def test_preflight_error_without_process_omits_process_lines() -> None:
    err = CosignError("manifest unknown", reference="reg.io/app:1")
    assert str(err) == "manifest unknown\n  reference: reg.io/app:1"


def test_batch_error_lists_each_failure() -> None:
    ok = SignResult(reference="a/bb:1", digest="sha256:00", key="prod")
    err = BatchSignError([ok], {"a/cc:1": CosignError("boom", reference="a/cc:1")})
    assert str(err) == "1 of 2 references failed to sign:\n  a/cc:1: CosignError: boom"
    assert err.results == (ok,)
