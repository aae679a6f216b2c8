"""The most an answer's body may hold, once decompressed.

requests reads a body whole before the kit sees it. An API (or a proxy in front of it) that sends without end, fast,
or a small gzip body that inflates to hundreds of megabytes, grew the load's memory by about 100 MB a second until
the attempt's deadline, and one answer of 300 KB became 1.9 GB (helper-146). A page of the guide's listing is about
24 KB; a body past the cap stops the load, named, and is not asked for again.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

from requests.exceptions import RequestException

from analytics_kit.errors import ConfigError

MAX_ANSWER_ENV = "ANALYTICS_KIT_MAX_ANSWER_MB"
MAX_ANSWER_MB = 100


class AnswerTooLarge(RequestException):
    """A body past the cap: the same on every attempt, so not retried."""

    def __init__(self, limit: int, **kwargs: Any) -> None:
        super().__init__(f"the answer's body went past {limit // 10**6:,} MB", **kwargs)
        self.limit = limit


def max_answer_bytes() -> int:
    """The cap in bytes: ``ANALYTICS_KIT_MAX_ANSWER_MB`` megabytes, or 100."""
    value = os.environ.get(MAX_ANSWER_ENV, "").strip()
    if not value:
        return MAX_ANSWER_MB * 10**6
    try:
        megabytes = float(value)
    except ValueError:
        megabytes = 0.0
    if not 0 < megabytes < 2**40:  # NaN fails this too
        raise ConfigError(f"got {value!r}; expected a number of megabytes such as 100, above 0 and below 2**40",
                          path=MAX_ANSWER_ENV, guidance=f"Set {MAX_ANSWER_ENV} to a number of megabytes, or unset it "
                          f"for the default, {MAX_ANSWER_MB}.")
    return int(megabytes * 10**6)


def cap_body(response: Any, limit: int) -> None:
    """Makes reading ``response``'s body (requests reads it through urllib3's ``stream``, decompressed) raise
    ``AnswerTooLarge`` once it went past ``limit`` bytes, before the next chunk is kept."""
    raw = getattr(response, "raw", None)
    stream = getattr(raw, "stream", None)
    if stream is None:
        return

    def capped(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        read = 0
        for chunk in stream(*args, **kwargs):
            read += len(chunk)
            if read > limit:
                raw.close()  # the rest is not read: the connection cannot be used again
                raise AnswerTooLarge(limit, request=response.request, response=response)
            yield chunk

    raw.stream = capped
