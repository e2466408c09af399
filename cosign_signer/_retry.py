"""Bounded retries of transient failures, with exponential backoff and jitter.

Only an error whose ``transient`` flag is set (connection refused/reset, timeouts, 429, 5xx) is
tried again, at most ``retries`` times; everything else is raised on the first try.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from cosign_signer.errors import CosignError

__all__ = ["backoff_delay", "with_retries"]

_log = logging.getLogger("cosign_signer")
_T = TypeVar("_T")
#: No single wait is longer than this, whatever ``retry_backoff`` and the attempt number say.
MAX_BACKOFF = 60.0


def backoff_delay(attempt: int, base: float) -> float:
    """Seconds to wait before retry ``attempt``: ``base * 2**(attempt-1)`` (capped), with jitter
    drawing between half of it and all of it so parallel retries spread out."""
    ceiling = min(MAX_BACKOFF, base * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography


def with_retries(operation: Callable[[int], _T], *, what: str, retries: int, base: float) -> _T:
    """Run ``operation(attempt)`` until it returns, retrying transient :class:`CosignError`.

    Each retry is logged at WARNING with the reason; the error finally raised records how many
    attempts were made.
    """
    attempt = 1
    while True:
        try:
            return operation(attempt)
        except CosignError as exc:
            if not exc.transient or attempt > retries:
                raise exc.with_attempts(attempt) from exc.__cause__
            delay = backoff_delay(attempt, base)
            _log.warning(
                "%s failed (%s); retry %d of %d in %.1f s",
                what,
                exc.message,
                attempt,
                retries,
                delay,
            )
            time.sleep(delay)
            attempt += 1
