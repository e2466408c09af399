"""Reading cosign's stderr: lines as cosign 2.5 and 3.1 print them (see COSIGN-FACTS.md)."""

from __future__ import annotations

import pytest

from cosign_signer import (
    CosignError,
    ImageNotFoundError,
    RegistryAuthError,
    RegistryUnavailableError,
    SigningKeyError,
    TransparencyLogError,
)
from cosign_signer._classify import ALL, classify, failing_reference, stopped_at, tlog_indices

R = "127.0.0.1:5000/app@sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("line", "kind", "transient"),
    [
        (
            f"signing [{R}]: getting signer: reading key: decrypt: encrypted: decryption failed",
            SigningKeyError,
            False,
        ),
        (
            f"signing [{R}]: getting signer: reading key: open /k: no such file or directory",
            SigningKeyError,
            False,
        ),
        (
            f"signing [{R}]: accessing entity: GET http://x/v2/: UNAUTHORIZED: authentication required; [map[]]",
            RegistryAuthError,
            False,
        ),
        (
            f"signing [{R}]: accessing entity: entity not found in registry",
            ImageNotFoundError,
            False,
        ),
        (
            f"signing [{R}]: HEAD http://x/v2/app/manifests/sha256:ab: unexpected status code 404 Not Found (HEAD responses have no body, use GET for details)",
            ImageNotFoundError,
            False,
        ),
        (
            f'signing [{R}]: Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
            RegistryUnavailableError,
            True,
        ),
        (
            f"signing [{R}]: PUT http://x: unexpected status code 503 Service Unavailable",
            RegistryUnavailableError,
            True,
        ),
        (
            f"signing [{R}]: POST http://r/api/v1/log/entries giving up after 4 attempt(s): connection refused",
            TransparencyLogError,
            True,
        ),
        (f"signing [{R}]: something new", CosignError, False),
    ],
)
def test_classify(line: str, kind: type[CosignError], transient: bool) -> None:
    stderr = f"Pushing signature to: x\nError: {line}\nerror during command execution: {line}\n"
    assert classify(stderr) == (kind, transient)
    assert failing_reference(stderr, ["other", R]) == R


def test_tlog_indices_in_order() -> None:
    assert tlog_indices(
        "tlog entry created with index: 7\nx\ntlog entry created with index: 9\n"
    ) == [7, 9]


# cosign's last "Error:" line under each fault of the test fault proxy (tests/infra/fault_proxy.py),
# copied from `scripts/observe_cosign_faults.py` with cosign 2.5.0 (Debian 2.5.0-2+b5) and 3.1.1
# (Debian 3.1.1-2) in front of distribution 2.8. "writes": the fault hits POST/PUT/PATCH (the push);
# "ping": GET /v2/, which cosign asks first. A JSON error body replaces the HTTP status in
# cosign's message with the registry's error code (UNAVAILABLE, TOOMANYREQUESTS, UNKNOWN).
# "stall-*-cosign-timeout": cosign's own --timeout expired (our --timeout is shorter than ours).
OBSERVED = [
    (
        "503-writes",
        "2",
        "signing [127.0.0.1:44523/app@sha256:790ccdee9b282d7e2d7c734179253ceabe1316e834847c2778ec51dd4444aa32]: signing digest: POST http://127.0.0.1:44523/v2/app/blobs/uploads/: UNAVAILABLE: fault injected by the test proxy",
        RegistryUnavailableError,
        True,
    ),
    (
        "503-writes",
        "3",
        "signing [127.0.0.1:33709/app@sha256:67a536537f4853b0a3a08bb6dcfae56620605361b6ba414d4ea75268093e0a7a]: signing digest: failed to upload layer: POST http://127.0.0.1:33709/v2/app/blobs/uploads/: UNAVAILABLE: fault injected by the test proxy",
        RegistryUnavailableError,
        True,
    ),
    (
        "429-writes",
        "2",
        "signing [127.0.0.1:33111/app@sha256:5baec170061dca6118d1404af95520dd6c9f268e8ed13bfa67ef8ceb0580a9d6]: signing digest: POST http://127.0.0.1:33111/v2/app/blobs/uploads/: TOOMANYREQUESTS: fault injected by the test proxy",
        RegistryUnavailableError,
        True,
    ),
    (
        "429-writes",
        "3",
        "signing [127.0.0.1:42395/app@sha256:9f91f5e38b640fdcc36522750763b10bd2ad0b97e1c0ac32d60857ebde8fc37d]: signing digest: failed to upload layer: POST http://127.0.0.1:42395/v2/app/blobs/uploads/: TOOMANYREQUESTS: fault injected by the test proxy",
        RegistryUnavailableError,
        True,
    ),
    (
        "500-unknown-writes",
        "2",
        "signing [127.0.0.1:42937/app@sha256:7254294b3f16101a88f0501f7fe5809c66450aa82e3a2c834b100f52bccb8855]: signing digest: POST http://127.0.0.1:42937/v2/app/blobs/uploads/: UNKNOWN: unknown error",
        RegistryUnavailableError,
        True,
    ),
    (
        "500-unknown-writes",
        "3",
        "signing [127.0.0.1:46397/app@sha256:8288181efc00759f4cb4cd30927857c807fa9328fb5124f77d958598d4262366]: signing digest: failed to upload layer: POST http://127.0.0.1:46397/v2/app/blobs/uploads/: UNKNOWN: unknown error",
        RegistryUnavailableError,
        True,
    ),
    (
        "reset-writes",
        "2",
        'signing [127.0.0.1:32899/app@sha256:df83d19435c55e03921e9f2502b6184ce413a7ecdac1e31dd2fcc09f73b18f41]: signing digest: Post "http://127.0.0.1:32899/v2/app/blobs/uploads/": read tcp 127.0.0.1:41214->127.0.0.1:32899: read: connection reset by peer',
        RegistryUnavailableError,
        True,
    ),
    (
        "reset-writes",
        "3",
        'signing [127.0.0.1:37399/app@sha256:0ea2e7331c7299f0fe09c94994c273bac716e5d14bafba16c83204c0f523ed96]: signing digest: failed to upload layer: Post "http://127.0.0.1:37399/v2/app/blobs/uploads/": read tcp 127.0.0.1:34744->127.0.0.1:37399: read: connection reset by peer',
        RegistryUnavailableError,
        True,
    ),
    (
        "401-writes",
        "2",
        "signing [127.0.0.1:39329/app@sha256:ec39f83ce6b8158817312ea27a7ad86a3e9f7e08f95004deedda1d44782766bf]: signing digest: POST http://127.0.0.1:39329/v2/app/blobs/uploads/: UNAUTHORIZED: fault injected by the test proxy",
        RegistryAuthError,
        False,
    ),
    (
        "401-writes",
        "3",
        "signing [127.0.0.1:35109/app@sha256:15ae840f93ea0266950b4f99ef4d2efc5880e1bd788e257d096c792c8d271e66]: signing digest: failed to upload layer: POST http://127.0.0.1:35109/v2/app/blobs/uploads/: UNAUTHORIZED: fault injected by the test proxy",
        RegistryAuthError,
        False,
    ),
    (
        "401-password-writes",
        "2",
        "signing [127.0.0.1:33403/app@sha256:c2e65ce39472544b803839a3326c42a772f9fb320d8f2c47ff74bf27e3f8659e]: signing digest: POST http://127.0.0.1:33403/v2/app/blobs/uploads/: UNAUTHORIZED: incorrect username or password",
        RegistryAuthError,
        False,
    ),
    (
        "401-password-writes",
        "3",
        "signing [127.0.0.1:35715/app@sha256:59a8cf7deb857e42d49f279c6d500f0077fd6cde0d44c625539ebad6d2c5b929]: signing digest: failed to upload layer: POST http://127.0.0.1:35715/v2/app/blobs/uploads/: UNAUTHORIZED: incorrect username or password",
        RegistryAuthError,
        False,
    ),
    (
        "403-denied-writes",
        "2",
        "signing [127.0.0.1:43235/app@sha256:469d56e7160e8f947f37c9f5e636e078f461236f363d8bca02915f415ca51fd6]: signing digest: POST http://127.0.0.1:43235/v2/app/blobs/uploads/: DENIED: requested access to the resource is denied",
        RegistryAuthError,
        False,
    ),
    (
        "403-denied-writes",
        "3",
        "signing [127.0.0.1:44421/app@sha256:de9154cd86a2153d01e640f0324a6692bb41486cecfd1d7b2e03e7e032a403e9]: signing digest: failed to upload layer: POST http://127.0.0.1:44421/v2/app/blobs/uploads/: DENIED: requested access to the resource is denied",
        RegistryAuthError,
        False,
    ),
    (
        "503-ping",
        "2",
        'signing [127.0.0.1:37681/app@sha256:cc9c3c4259dd474c58ea8ea17bd74049e61d7606812d24199f2e8b3f1a34528d]: accessing image: Get "https://127.0.0.1:37681/v2/": http: server gave HTTP response to HTTPS client; GET http://127.0.0.1:37681/v2/: unexpected status code 503 Service Unavailable',
        RegistryUnavailableError,
        True,
    ),
    (
        "503-ping",
        "3",
        'signing [127.0.0.1:43443/app@sha256:53d728e38d4cc3fe0d680328e3226381dac5da6e118957e3eb39138700fd77f4]: accessing image: Get "https://127.0.0.1:43443/v2/": http: server gave HTTP response to HTTPS client; GET http://127.0.0.1:43443/v2/: unexpected status code 503 Service Unavailable',
        RegistryUnavailableError,
        True,
    ),
    (
        "429-ping",
        "2",
        'signing [127.0.0.1:46421/app@sha256:dac0e72afca3caa214616005a493e68216694d78ccbbe9b28d653541bd52598a]: accessing image: Get "https://127.0.0.1:46421/v2/": http: server gave HTTP response to HTTPS client; GET http://127.0.0.1:46421/v2/: TOOMANYREQUESTS: fault injected by the test proxy',
        RegistryUnavailableError,
        True,
    ),
    (
        "429-ping",
        "3",
        'signing [127.0.0.1:42801/app@sha256:f82086889c9c02ce8657656726dd8fbe3e1e0eefdb52504f74edd2eafb0d75a8]: accessing image: Get "https://127.0.0.1:42801/v2/": http: server gave HTTP response to HTTPS client; GET http://127.0.0.1:42801/v2/: TOOMANYREQUESTS: fault injected by the test proxy',
        RegistryUnavailableError,
        True,
    ),
    (
        "502-html-ping",
        "2",
        'signing [127.0.0.1:36905/app@sha256:a537caea067b6256f73252d1086b3e9935a2966a04af2e261b6b0ccb39c21d63]: accessing image: Get "https://127.0.0.1:36905/v2/": http: server gave HTTP response to HTTPS client; GET http://127.0.0.1:36905/v2/: unexpected status code 502 Bad Gateway',
        RegistryUnavailableError,
        True,
    ),
    (
        "502-html-ping",
        "3",
        'signing [127.0.0.1:35089/app@sha256:dda4966f56e821e67b938376b6f3d2cbe5e84ea5f2bba912525d56ce22309ae4]: accessing image: Get "https://127.0.0.1:35089/v2/": http: server gave HTTP response to HTTPS client; GET http://127.0.0.1:35089/v2/: unexpected status code 502 Bad Gateway',
        RegistryUnavailableError,
        True,
    ),
    (
        "504-text-ping",
        "2",
        'signing [127.0.0.1:41935/app@sha256:87b62de57d9ff0e1f22cbd8012eaff110749d268ba7c32ae6a5b508396a0b56c]: accessing image: Get "https://127.0.0.1:41935/v2/": http: server gave HTTP response to HTTPS client; GET http://127.0.0.1:41935/v2/: unexpected status code 504 Gateway Timeout',
        RegistryUnavailableError,
        True,
    ),
    (
        "504-text-ping",
        "3",
        'signing [127.0.0.1:33415/app@sha256:eb0e1331215e6aa21b8e98ef12887f1440c9c06ff0ae8d700016cf8d7bda5ce0]: accessing image: Get "https://127.0.0.1:33415/v2/": http: server gave HTTP response to HTTPS client; GET http://127.0.0.1:33415/v2/: unexpected status code 504 Gateway Timeout',
        RegistryUnavailableError,
        True,
    ),
    (
        "reset-ping",
        "2",
        'signing [127.0.0.1:37409/app@sha256:cf84ab4a6e36c10d3a44c98f1ea42a711abec6c9aef2cc3c4b53c1cc8c76ae71]: accessing image: Get "https://127.0.0.1:37409/v2/": http: server gave HTTP response to HTTPS client; Get "http://127.0.0.1:37409/v2/": read tcp 127.0.0.1:60892->127.0.0.1:37409: read: connection reset by peer',
        RegistryUnavailableError,
        True,
    ),
    (
        "reset-ping",
        "3",
        'signing [127.0.0.1:45601/app@sha256:81b27de075283e1f6a844add99546e654f0879fc88c746bef04303e1f90558e7]: accessing image: Get "https://127.0.0.1:45601/v2/": http: server gave HTTP response to HTTPS client; Get "http://127.0.0.1:45601/v2/": read tcp 127.0.0.1:50664->127.0.0.1:45601: read: connection reset by peer',
        RegistryUnavailableError,
        True,
    ),
    (
        "stall-writes-cosign-timeout",
        "2",
        'signing [127.0.0.1:46257/app@sha256:ca17b95e7fafe096f59ee97d6270c05beb2c22550e90168753b4358ad6b734e9]: signing digest: Post "http://127.0.0.1:46257/v2/app/blobs/uploads/": context deadline exceeded',
        RegistryUnavailableError,
        True,
    ),
    (
        "stall-writes-cosign-timeout",
        "3",
        'signing [127.0.0.1:42479/app@sha256:3fd68d14058c5314fefc3fc544a1fca04df0b322c6122087aca082b0835ed57e]: signing digest: failed to upload layer: Post "http://127.0.0.1:42479/v2/app/blobs/uploads/": context deadline exceeded',
        RegistryUnavailableError,
        True,
    ),
    (
        "stall-ping-cosign-timeout",
        "2",
        'signing [127.0.0.1:43701/app@sha256:2e2c42444fcd359f5b6dc7c6b1da70a59728049f5a590395d35eaf3784a8dc94]: accessing image: Get "https://127.0.0.1:43701/v2/": http: server gave HTTP response to HTTPS client; Get "http://127.0.0.1:43701/v2/": context deadline exceeded',
        RegistryUnavailableError,
        True,
    ),
    (
        "stall-ping-cosign-timeout",
        "3",
        'signing [127.0.0.1:45489/app@sha256:57fd02bc862deabe41e6a5254fa7395fecb826722b80a357584541f5a0ab5aec]: accessing image: Get "https://127.0.0.1:45489/v2/": http: server gave HTTP response to HTTPS client; Get "http://127.0.0.1:45489/v2/": context deadline exceeded',
        RegistryUnavailableError,
        True,
    ),
]


@pytest.mark.parametrize(
    ("fault", "gen", "line", "kind", "transient"),
    OBSERVED,
    ids=[f"{fault}-cosign{gen}" for fault, gen, *_ in OBSERVED],
)
def test_observed_fault_lines(
    fault: str, gen: str, line: str, kind: type[CosignError], transient: bool
) -> None:
    stderr = f"Pushing signature to: x\nError: {line}\nerror during command execution: {line}\n"
    assert classify(stderr) == (kind, transient)
    ref = line.split("[", 1)[1].split("]", 1)[0]
    assert failing_reference(stderr, ["other", ref]) == ref


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        # Words a registry may use must not turn a registry error into a key error...
        (
            f"signing [{R}]: signing digest: POST http://x/v2/: UNAUTHORIZED: incorrect username or password",
            RegistryAuthError,
        ),
        # ...while the key's own errors stay key errors, even when they say "password".
        (
            f"signing [{R}]: getting signer: reading key: read password: inappropriate ioctl for device",
            SigningKeyError,
        ),
        (f"signing [{R}]: something about a kms we cannot tell apart", SigningKeyError),
    ],
)
def test_key_words_do_not_hide_registry_errors(line: str, kind: type[CosignError]) -> None:
    assert classify(f"Error: {line}\n")[0] is kind


# Whole stderr of a 3-reference run whose 2nd reference failed, per generation: its push answered
# 401 ("push"), or the GET of its manifest did, before cosign got to its push ("before-push").
# Copied from real runs through the fault proxy; the registry then held a signature for the 1st only.
BATCH_STDERR = [
    (
        "push",
        "2",
        [
            "127.0.0.1:43329/mid0@sha256:e986a8b772d86a6c5f3e428fc5a6f9b09570d04f702617d0ded68e5afeb54720",
            "127.0.0.1:43329/mid1@sha256:7e7f04f709f8f1b593f36c28d50f159636aafa223d5686dc43748039223a509e",
            "127.0.0.1:43329/mid2@sha256:91a8bef4ec2d58d6d85897dfbc933b9e10f419e492c40db4e7f5c1d9b7db0008",
        ],
        "Pushing signature to: 127.0.0.1:43329/mid0\nPushing signature to: 127.0.0.1:43329/mid1\nError: signing [127.0.0.1:43329/mid0@sha256:e986a8b772d86a6c5f3e428fc5a6f9b09570d04f702617d0ded68e5afeb54720 127.0.0.1:43329/mid1@sha256:7e7f04f709f8f1b593f36c28d50f159636aafa223d5686dc43748039223a509e 127.0.0.1:43329/mid2@sha256:91a8bef4ec2d58d6d85897dfbc933b9e10f419e492c40db4e7f5c1d9b7db0008]: signing digest: POST http://127.0.0.1:43329/v2/mid1/blobs/uploads/: UNAUTHORIZED: fault injected by the test proxy\nerror during command execution: signing [127.0.0.1:43329/mid0@sha256:e986a8b772d86a6c5f3e428fc5a6f9b09570d04f702617d0ded68e5afeb54720 127.0.0.1:43329/mid1@sha256:7e7f04f709f8f1b593f36c28d50f159636aafa223d5686dc43748039223a509e 127.0.0.1:43329/mid2@sha256:91a8bef4ec2d58d6d85897dfbc933b9e10f419e492c40db4e7f5c1d9b7db0008]: signing digest: POST http://127.0.0.1:43329/v2/mid1/blobs/uploads/: UNAUTHORIZED: fault injected by the test proxy\n",
    ),
    (
        "push",
        "3",
        [
            "127.0.0.1:41737/mid0@sha256:a0ab5cde404fc399f97fcd73d783a1bfa9db008b5b313178f241dcc0257fb398",
            "127.0.0.1:41737/mid1@sha256:f2ceaf3c690ff4c0f858d3eb9621486a54ae04f7c1a29a30be7c890193e8f06e",
            "127.0.0.1:41737/mid2@sha256:ac5c277a7cd552eec50324898577e14af9c99f29898dbd54f70d05bc327f6eb1",
        ],
        "Flag --tlog-upload has been deprecated, prefer using a --signing-config file with no transparency log services\nSigning artifact...\nPushing signature to: 127.0.0.1:41737/mid0\nSigning artifact...\nPushing signature to: 127.0.0.1:41737/mid1\nError: signing [127.0.0.1:41737/mid0@sha256:a0ab5cde404fc399f97fcd73d783a1bfa9db008b5b313178f241dcc0257fb398 127.0.0.1:41737/mid1@sha256:f2ceaf3c690ff4c0f858d3eb9621486a54ae04f7c1a29a30be7c890193e8f06e 127.0.0.1:41737/mid2@sha256:ac5c277a7cd552eec50324898577e14af9c99f29898dbd54f70d05bc327f6eb1]: signing digest: failed to upload layer: POST http://127.0.0.1:41737/v2/mid1/blobs/uploads/: UNAUTHORIZED: fault injected by the test proxy\nerror during command execution: signing [127.0.0.1:41737/mid0@sha256:a0ab5cde404fc399f97fcd73d783a1bfa9db008b5b313178f241dcc0257fb398 127.0.0.1:41737/mid1@sha256:f2ceaf3c690ff4c0f858d3eb9621486a54ae04f7c1a29a30be7c890193e8f06e 127.0.0.1:41737/mid2@sha256:ac5c277a7cd552eec50324898577e14af9c99f29898dbd54f70d05bc327f6eb1]: signing digest: failed to upload layer: POST http://127.0.0.1:41737/v2/mid1/blobs/uploads/: UNAUTHORIZED: fault injected by the test proxy\n",
    ),
    (
        "before-push",
        "2",
        [
            "127.0.0.1:37673/mid0@sha256:830f2001e60ac06c3520fb7858e2491901ef0dfd0c1235d4c348c855886e25e6",
            "127.0.0.1:37673/mid1@sha256:77b64da9a3b2a328a14ef745e051af8cda0cd41f40479ff0c8e2b0d7e55b2e66",
            "127.0.0.1:37673/mid2@sha256:10ee64aa6f7a174f12b7f171d8f062eb5b7d008af30f59f9e825a26851a9b937",
        ],
        "Pushing signature to: 127.0.0.1:37673/mid0\nError: signing [127.0.0.1:37673/mid0@sha256:830f2001e60ac06c3520fb7858e2491901ef0dfd0c1235d4c348c855886e25e6 127.0.0.1:37673/mid1@sha256:77b64da9a3b2a328a14ef745e051af8cda0cd41f40479ff0c8e2b0d7e55b2e66 127.0.0.1:37673/mid2@sha256:10ee64aa6f7a174f12b7f171d8f062eb5b7d008af30f59f9e825a26851a9b937]: accessing image: GET http://127.0.0.1:37673/v2/mid1/manifests/sha256:77b64da9a3b2a328a14ef745e051af8cda0cd41f40479ff0c8e2b0d7e55b2e66: UNAUTHORIZED: fault injected by the test proxy\nerror during command execution: signing [127.0.0.1:37673/mid0@sha256:830f2001e60ac06c3520fb7858e2491901ef0dfd0c1235d4c348c855886e25e6 127.0.0.1:37673/mid1@sha256:77b64da9a3b2a328a14ef745e051af8cda0cd41f40479ff0c8e2b0d7e55b2e66 127.0.0.1:37673/mid2@sha256:10ee64aa6f7a174f12b7f171d8f062eb5b7d008af30f59f9e825a26851a9b937]: accessing image: GET http://127.0.0.1:37673/v2/mid1/manifests/sha256:77b64da9a3b2a328a14ef745e051af8cda0cd41f40479ff0c8e2b0d7e55b2e66: UNAUTHORIZED: fault injected by the test proxy\n",
    ),
    (
        "before-push",
        "3",
        [
            "127.0.0.1:33483/mid0@sha256:aa4a9dea0026a593a481fd57ebad7d9c623dbaa6b7a930e9dc54ae3f269e385b",
            "127.0.0.1:33483/mid1@sha256:7564a20cedf9f6224f7fa1ebc9981beadf26209563a9a279dd1ed8e69d66e715",
            "127.0.0.1:33483/mid2@sha256:4dde8e4ee3479b2a112f8091d77d08b995b53b0f382172126a3a51e3f960c52d",
        ],
        "Flag --tlog-upload has been deprecated, prefer using a --signing-config file with no transparency log services\nSigning artifact...\nPushing signature to: 127.0.0.1:33483/mid0\nError: signing [127.0.0.1:33483/mid0@sha256:aa4a9dea0026a593a481fd57ebad7d9c623dbaa6b7a930e9dc54ae3f269e385b 127.0.0.1:33483/mid1@sha256:7564a20cedf9f6224f7fa1ebc9981beadf26209563a9a279dd1ed8e69d66e715 127.0.0.1:33483/mid2@sha256:4dde8e4ee3479b2a112f8091d77d08b995b53b0f382172126a3a51e3f960c52d]: accessing image: GET http://127.0.0.1:33483/v2/mid1/manifests/sha256:7564a20cedf9f6224f7fa1ebc9981beadf26209563a9a279dd1ed8e69d66e715: UNAUTHORIZED: fault injected by the test proxy\nerror during command execution: signing [127.0.0.1:33483/mid0@sha256:aa4a9dea0026a593a481fd57ebad7d9c623dbaa6b7a930e9dc54ae3f269e385b 127.0.0.1:33483/mid1@sha256:7564a20cedf9f6224f7fa1ebc9981beadf26209563a9a279dd1ed8e69d66e715 127.0.0.1:33483/mid2@sha256:4dde8e4ee3479b2a112f8091d77d08b995b53b0f382172126a3a51e3f960c52d]: accessing image: GET http://127.0.0.1:33483/v2/mid1/manifests/sha256:7564a20cedf9f6224f7fa1ebc9981beadf26209563a9a279dd1ed8e69d66e715: UNAUTHORIZED: fault injected by the test proxy\n",
    ),
]


@pytest.mark.parametrize(
    ("kind", "gen", "refs", "stderr"),
    BATCH_STDERR,
    ids=[f"{kind}-cosign{gen}" for kind, gen, *_ in BATCH_STDERR],
)
def test_a_batch_error_names_every_reference_and_progress_tells_which_failed(
    kind: str, gen: str, refs: list[str], stderr: str
) -> None:
    assert failing_reference(stderr, refs) == ALL
    assert stopped_at(stderr, refs) == 1  # the 1st was signed, the 2nd failed, the 3rd not tried
    assert classify(stderr) == (RegistryAuthError, False)


def test_stopped_at_without_matching_progress_lines_is_unknown() -> None:
    refs = [f"r.io/a{i}@sha256:" + "ab" * 32 for i in range(2)]
    assert (
        stopped_at("Error: signing [x]: accessing image: dial tcp: connection refused\n", refs)
        is None
    )
    # more pushes than references (--recursive signs each child manifest): unknown
    lines = "Pushing signature to: r.io/a0\n" * 3 + "Error: boom\n"
    assert stopped_at(lines, refs) is None
    # a push to another repository than the reference in that position: unknown
    assert stopped_at("Pushing signature to: r.io/other\nError: boom\n", refs) is None
    # killed (no Error: line) while pushing the 2nd: the 2nd counts as not signed
    assert stopped_at("Pushing signature to: r.io/a0\nPushing signature to: r.io/a1\n", refs) == 1
