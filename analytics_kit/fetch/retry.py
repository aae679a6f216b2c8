"""The integration guide's ``error_handler``, as a retrying ``requests`` session.

dlt's ``Client`` builds the same tenacity retry around ``Session.send``, but it
cannot report retries or count requests, and dlt keeps one session per client.
The kit builds one session per resource from dlt's own retry conditions and wait
(``retry_if_status``, ``wait_exponential_retry_after``) and adds a log line and a
counter per retry. Each attempt runs under the timeout's deadline (``transport``),
after any pause a 429 imposed on the resource's sessions (``Gate``), and fails with
an error whose text is redacted and which chains none of urllib3's.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Iterable

from requests import ConnectionError as RequestsConnectionError
from requests import PreparedRequest, ReadTimeout, RequestException, Response
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar
from requests.exceptions import ChunkedEncodingError
from tenacity import RetryCallState, Retrying, retry_any, retry_if_exception, stop_after_attempt
from urllib3.exceptions import ReadTimeoutError

from analytics_kit.errors import LoadError, causes
from analytics_kit.fetch.cut_answers import (
    CutAnswer,
    TooManyHeaders,
    broken_header,
    cut_short,
    raised_in_answer,
)
from analytics_kit.fetch.deadlines import PassEnded, deadline, in_attempt
from analytics_kit.fetch.answer_size import MAX_ANSWER_ENV, AnswerTooLarge
from analytics_kit.fetch.open_files import open_files_error, out_of_files
from analytics_kit.fetch.shared_cookies import current_cookies
from analytics_kit.fetch.stats import LoadStats, RetryEvent
from analytics_kit.fetch.transport import (
    DEFAULT_TIMEOUT,
    KitSession,
    ResponseTimeout,
    host_port,
    origin,
    request_text,
    unreachable,
)
from analytics_kit.redact import Redactor
from analytics_kit.seam import DEFAULT_RETRY_EXCEPTIONS, retry_if_status, wait_exponential_retry_after

logger = logging.getLogger(__name__)

# A request the API refused on its merits fails the same way when repeated.
NEVER_RETRIED = frozenset({400, 401, 403, 404})
# Set on a connection error to an origin that has not answered in this run and could not be
# connected to at all (refused, no such host, TLS failed): "host:port: why". Not retried.
UNREACHABLE = "kit_unreachable"


@dataclass(frozen=True)
class RetryPolicy:
    """What to retry and how long to wait: ``backoff_factor * 2**(n-1)`` before retry n."""

    status_codes: tuple[int, ...] = (429, 500, 502, 503, 504)
    max_retries: int = 3
    backoff_factor: float = 2.0
    # Cap on any single wait, Retry-After included (dlt's own cap is 300 s).
    max_delay: float = 60.0
    # Seconds for each attempt: connecting, each wait for data, and the whole response.
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        """A policy built by hand is checked as an error_handler block is: RetryPolicy(max_retries="3") failed deep
        in a load as a TypeError, and backoff_factor=-1 waited -1, -2 and -4 s (helper-125)."""
        from analytics_kit.config.prepared import policy_fields

        policy_fields({"retry_on_status_codes": list(self.status_codes) if isinstance(self.status_codes, (list, tuple))
                       else self.status_codes, "max_retries": self.max_retries,
                       "backoff_factor": self.backoff_factor, "max_retry_delay": self.max_delay,
                       "timeout": self.timeout}, "RetryPolicy")

    @property
    def attempts(self) -> int:
        return self.max_retries + 1

    def waits(self) -> list[float]:
        """The backoff schedule without Retry-After: 2, 4, 8 s for factor 2."""
        return [min(self.max_delay, self.backoff_factor * 2 ** (n - 1)) for n in range(1, self.attempts)]

    def worst_case(self) -> float:
        """The longest one request can take, every attempt timing out: attempts x timeout + waits.

        A 429's Retry-After can make a wait longer than the backoff, up to ``max_delay``.
        """
        return self.attempts * self.timeout + sum(self.waits())


class Gate:
    """A pause shared by all of a resource's workers: a 429 with Retry-After closes it for all."""

    def __init__(self, max_delay: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.max_delay = max_delay
        self.clock = clock
        self.sleep = sleep
        self._until = 0.0
        self._lock = threading.Lock()

    def wait(self, sleep: Callable[[float], None] | None = None) -> None:
        """Returns once the gate is open; ``sleep`` (default: the gate's) waits meanwhile."""
        while True:
            with self._lock:
                left = self._until - self.clock()
            if left <= 0:
                return
            (sleep or self.sleep)(left)

    def left(self) -> float:
        """Seconds until the gate opens (0 when open)."""
        with self._lock:
            return max(0.0, self._until - self.clock())

    def pause(self, seconds: float) -> None:
        seconds = max(0.0, min(seconds, self.max_delay))
        with self._lock:
            self._until = max(self._until, self.clock() + seconds)


def retry_after(response: Response, default: float = 1.0) -> float:
    """Seconds a 429 asks to wait: Retry-After in seconds or as an HTTP date."""
    value = response.headers.get("Retry-After")
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return default


def retry_session(
    policy: RetryPolicy,
    *,
    resource: str,
    stats: LoadStats | None = None,
    redactor: Redactor | None = None,
    sleep: Callable[[float], None] = time.sleep,
    origins: Iterable[str] = (),
    gate: Gate | None = None,
    cookies: RequestsCookieJar | None = None,
) -> KitSession:
    """A session that retries as ``policy`` says and reports every attempt to ``stats``.

    Each attempt must be complete within ``policy.timeout``, its redirects included;
    requests and redirects go to ``origins`` only (any origin when empty). Sessions that
    share a ``gate`` all pause when one of them gets a 429, and those given one ``cookies``
    jar keep the cookies the API sets in it.
    """
    stats = stats if stats is not None else LoadStats()
    redact = redactor if redactor is not None else Redactor()  # an empty one too: it may learn a token (learn)
    session = KitSession(origins=origins, timeout=policy.timeout, redact=redact, cookies=cookies)
    send = session.send

    def counted_send(request: PreparedRequest, **kwargs):  # type: ignore[no-untyped-def]
        session.check_origin(request)
        if not in_attempt():
            if gate is not None:
                gate.wait(sleep)  # before the deadline starts: waiting out a 429 is not the API being slow
            current_cookies(request)  # another worker's answer may have set one while this waited
        learn_credential(request.headers.get("Authorization"), redact)
        stats.request(resource, request_text(request, redact))
        if kwargs.get("stream"):  # a body read after the deadline's block: its reads need their own timeout
            kwargs["timeout"] = policy.timeout
        too_late = ResponseTimeout(f"no complete response within {policy.timeout:g} s", request=request)
        with deadline(policy.timeout) as watch:
            try:
                response = send(request, **kwargs)
                # cut off by the watchdog between headers, http.client can still hand back a
                # "response" (a status line, no headers, no body): it is not one
                raised: Exception | None = too_late if watch.fired else None
                if raised is None and not kwargs.get("stream") and cut_short(response):
                    # no response attached: the retry is reported as this error, not as its status
                    raised = ChunkedEncodingError(
                        f"the connection closed after {len(response.content):,} bytes of an answer that declared "
                        "no length, in the middle of its JSON (or before any)", request=request)
            except RequestException as error:
                # dlt's response hook raises HTTPError inside send, so a 429 arrives here too
                response = error.response
                if response is not None and response.raw is not None:
                    # raised before requests stores the answer's cookies: an API (a rate limiter, a
                    # proxy) may set one on its 429 or 503 and expect it on the retry
                    extract_cookies_to_jar(session.cookies, request, response.raw)
                # The watchdog cut the connection, or a read waited out the timeout (requests
                # reports that as a ConnectionError when it happens in the body): either way
                # no complete response came within the timeout.
                late = isinstance(error, ReadTimeout) or (
                    isinstance(error, RequestsConnectionError) and error.args
                    and isinstance(error.args[0], ReadTimeoutError))
                raised = too_late if watch.fired or late else _scrubbed(error, redact, request)
                if raised is not too_late and broken_header(error):
                    raised = ChunkedEncodingError(f"the answer's header block was cut or malformed ({raised})",
                                                  request=request)
                cut = raised_in_answer(error, CutAnswer)
                if raised is not too_late and cut is not None:
                    raised = ChunkedEncodingError(str(cut), request=request)
                if out_of_files(causes(error)):  # this process's limit, not the API: not retried
                    raised = open_files_error(f"sent {request_text(request, redact)}")
                if (unread := raised_in_answer(error, TooManyHeaders)) is not None:
                    raised = _too_many_headers(request, redact, unread.why)
                if isinstance(error, AnswerTooLarge):
                    raised = _too_large(request, redact, error.limit)
                if raised is not too_late:
                    _first_contact(raised, error, request, stats, redact)
        if response is not None:
            stats.answer(resource, origin(request.url), response.status_code)
        if gate is not None and response is not None and response.status_code == 429:
            gate.pause(retry_after(response))
        if raised is None:
            return response
        if watch.fired and watch.group is not None and watch.group.is_set():
            raise PassEnded("the listing's pass ended while this request was under way")  # not retried
        # Raised outside the except block, so nothing chains urllib3's errors, whose texts
        # hold the request URL, key included ("Max retries exceeded with url: ...?api_key=...").
        # A traceback printed anywhere (a notebook, a logging handler that fails mid-emit,
        # dlt's trace) shows the kit's redacted text only.
        raise raised

    def before_sleep(state: RetryCallState) -> None:
        request = state.args[0] if state.args else None
        event = RetryEvent(
            resource=resource,
            reason=_reason(state),
            attempt=state.attempt_number,
            attempts=policy.attempts,
            # a 429's pause (the gate's, read from Retry-After as dlt's wait does not: "0.5", a date) may be longer
            wait=round(max(state.next_action.sleep if state.next_action else 0.0, gate.left() if gate else 0.0), 3),
            request=request_text(request, redact) if request is not None else "?",
        )
        stats.retry(event)
        logger.warning("%s", event)

    retried_statuses = frozenset(c for c in policy.status_codes if c not in NEVER_RETRIED)
    if stats is not None and resource:
        stats.retried_statuses[resource] = retried_statuses  # a failure's advice tells an unretried status apart
    retrying = Retrying(
        retry=retry_any(
            retry_if_status(retried_statuses),
            retry_if_exception(lambda e: isinstance(e, DEFAULT_RETRY_EXCEPTIONS) and not getattr(e, UNREACHABLE, None)),
        ),
        wait=wait_exponential_retry_after(multiplier=policy.backoff_factor, max=policy.max_delay),
        stop=stop_after_attempt(policy.attempts),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
        # Out of attempts on a status: hand back the last response so dlt raises HTTPError for it.
        retry_error_callback=lambda state: state.outcome.result(),
    )

    def dispatch(request: PreparedRequest, **kwargs):  # type: ignore[no-untyped-def]
        # requests sends each redirect hop through session.send again, inside the attempt
        # that got the redirect: the hop runs within that attempt's deadline and retries
        if in_attempt():
            return counted_send(request, **kwargs)
        # The first attempt runs outside tenacity, whose setup per call cost about 70 us of a
        # page's 400 us of transport, though nearly every request succeeds at once. Any other
        # outcome is handed to tenacity as its first attempt, so the policy judges it as before.
        stats.first_attempt(request_text(request, redact))
        try:
            response = counted_send(request, **kwargs)
        except Exception as error:  # noqa: BLE001 - judged by the policy, which may re-raise it
            first: Response | Exception = error
        else:
            if response.status_code not in retried_statuses:
                return response
            first = response
        return retrying.wraps(_replaying(first, counted_send))(request, **kwargs)

    session.send = dispatch  # type: ignore[method-assign]
    return session


def _replaying(first: Response | Exception, send: Callable[..., Response]) -> Callable[..., Response]:
    """``send``, except that its first call gives back ``first``, an attempt already made."""
    pending = [first]

    def attempt(request: PreparedRequest, **kwargs):  # type: ignore[no-untyped-def]
        if not pending:
            return send(request, **kwargs)
        outcome = pending.pop()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return attempt


def learn_credential(header: Any, redact: Redactor) -> None:
    """The credential of an Authorization header, an OAuth2 token or a custom auth's obtained as the load runs: a
    secret like the config's (helper-111). A value of one word is one only with a digit in it ("Anonymous" is a
    scheme: helper-114); requests takes bytes too (helper-114: a TypeError failed every load)."""
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    if not isinstance(header, str):
        return
    scheme, _, credential = header.strip().partition(" ")
    if not credential.strip() and not any(c.isdigit() for c in scheme):
        return
    redact.learn(credential.strip() or scheme)


def _too_many_headers(request: PreparedRequest, redact: Redactor, why: str) -> LoadError:
    """A whole answer the kit cannot read, the same on every attempt: not retried."""
    return LoadError(
        f"The API at {host_port(request.url)} answered {request_text(request, redact)} with {redact(why)}; nothing "
        "from this run was committed.",
        guidance="The answer's header block comes from the API or a proxy in front of it, not from your config: "
        "ask its provider to send an answer HTTP/1.1 clients read (fewer or shorter header fields; HTTP/1.1 on a "
        "plain connection).",
        host=host_port(request.url), request=request_text(request, redact))


def _too_large(request: PreparedRequest, redact: Redactor, limit: int) -> LoadError:
    """A body past ``answer_size``'s cap: not retried, as it would come again."""
    return LoadError(
        f"The API at {host_port(request.url)} answered {request_text(request, redact)} with a body of more than "
        f"{limit // 10**6:,} MB (once decompressed); the kit stopped reading it, and nothing from this run was "
        "committed.", guidance="If the API really sends pages this large, ask for smaller pages (the paginator's "
        f"limit), or raise the cap with {MAX_ANSWER_ENV} (in MB, e.g. 500). An answer without end, or a small "
        "compressed one that inflates this far, is a fault of the API or of a proxy in front of it.",
        host=host_port(request.url), request=request_text(request, redact))


def _first_contact(raised: RequestException, error: RequestException, request: PreparedRequest,
                   stats: LoadStats, redact: Redactor) -> None:
    """Marks ``raised`` as not worth retrying when the API's origin could not be reached at all.

    A refused connection, a host name that does not resolve or a failed TLS handshake on the
    first contact with an origin is a wrong ``base_url`` (scheme, host, port) or a server
    that is down: the retry schedule (2 + 4 + 8 s for the guide's policy) would only delay
    the message. Once the origin has answered in this run, the same failures are retried:
    a server restarting mid-load, a network blip.
    """
    why = unreachable(error)
    if why and origin(request.url) not in stats.answered:
        setattr(raised, UNREACHABLE, redact(f"{host_port(request.url)}: {why}"))


def _scrubbed(error: RequestException, redact: Redactor, request: PreparedRequest) -> RequestException:
    """A copy of ``error`` of the same class whose text is redacted and which chains nothing.

    It names the request it failed on, which requests leaves out of errors raised while a
    body is read (a connection closed mid-response).
    """
    sent = error.request if error.request is not None else request
    try:
        return type(error)(redact(str(error)), request=sent, response=error.response)
    except TypeError:  # a subclass with another constructor
        return RequestException(redact(str(error)), request=sent, response=error.response)


def _reason(state: RetryCallState) -> str:
    error = state.outcome.exception() if state.outcome else None
    # dlt's RESTClient raises HTTPError from a response hook, inside send().
    response = getattr(error, "response", None) if error is not None else state.outcome.result()
    if response is not None:
        return f"HTTP {response.status_code}"
    return type(error).__name__
