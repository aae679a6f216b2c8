"""Keeps secrets out of messages and logs.

dlt masks a query-string key only for a fixed list of parameter names and not at
all in ``ConnectionError`` texts ("Max retries exceeded with url: ...?api_key=...").
The kit knows the secret values themselves, so it masks the values wherever they
appear, in plain and URL-encoded form, instead of guessing by parameter name.

Every secret is masked, whatever its length. One shorter than ``WHOLE_WORD_BELOW``, or
of letters only and shorter than ``PARTIAL_RUN`` (a username "user"), is masked where it
stands as a whole token (``api_key=ab1&``, ``'ab1'``), not inside longer words: masking
every "a" of a message would leave nothing readable, "its ***name" hid the advice, and a
key that short is seen as a value, between delimiters, in every URL, header and log line.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import threading
import weakref
from contextlib import contextmanager
from typing import Iterable, Iterator
from urllib.parse import quote, quote_plus, unquote

MASK = "***"
# Loggers that may print request URLs: urllib3's connection pool logs every request
# line at DEBUG; dlt logs request params at DEBUG.
NOISY_LOGGERS = ("urllib3.connectionpool", "urllib3", "dlt", "analytics_kit", "requests")
# Secrets shorter than this are masked as whole tokens only (see the module docstring).
WHOLE_WORD_BELOW = 4
# ``holds_part`` finds any run of this many characters of a secret: text an API sent may hold one cut off.
PARTIAL_RUN = 6
_ESCAPE = re.compile(r"%([0-9A-Fa-f])([0-9A-Fa-f])")
_U_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})")
_SKELETON = re.compile(r"[^0-9A-Za-z]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{8,}")
_HEX_PAIRS = re.compile(r"(?:\\x)?[0-9A-Fa-f]{2}(?:[\s:.,\-]*(?:\\x)?[0-9A-Fa-f]{2}){5,}")
_NOT_HEX = re.compile(r"[^0-9A-Fa-f]")
_LEARNING = threading.Lock()
# Credentials the load sends that it learns as secrets (see ``Redactor.learn``): how short, how many.
LEARNED_LEAST = 8
LEARNED_MOST = 16


class Redactor:
    """Replaces known secret values (and their URL-encoded forms) with ``***``."""

    def __init__(self, secrets: Iterable[str] = (), mask: str = MASK, tokens: bool = False,
                 words: Iterable[str] = ()) -> None:
        """``tokens``: each secret masked only where it stands as a whole token, however long (see ``known_mask``);
        ``words``: strong secrets (no plain word, 6 characters or more), masked wherever they stand, in any case."""
        self.mask = mask
        words = tuple(secret for secret in words if isinstance(secret, str) and secret)
        self._given = tuple(secret for secret in secrets if isinstance(secret, str) and secret) + words
        self._learned = 0
        forms: set[str] = set()
        loose: set[str] = set()  # the forms of ``words``
        for secret in self._given:
            own = _forms_of(secret)
            forms |= own
            if secret in words:
                loose |= own
        # Longest first, so a secret that contains another is masked whole.
        ordered = sorted(forms, key=len, reverse=True)
        self._forms = tuple(ordered)
        # the forms a JSON body may hold, for ``echoed``; too short ones would match anything.
        # Those with escapes are looked for by a pattern, in any case; the others as they are.
        in_bodies = [f for f in ordered if len(f) >= WHOLE_WORD_BELOW]
        self._in_bodies = tuple(f.encode("utf-8", "surrogatepass") for f in in_bodies if not _ESCAPE.search(f))
        escaped = [_pattern(f) for f in in_bodies if _ESCAPE.search(f)]
        self._escaped_in_bodies = re.compile("|".join(escaped).encode("utf-8", "surrogatepass")) if escaped else None
        # found in the SQL as typed, in any case (upper('key') was shown: helper-143)
        self._pattern = (re.compile("|".join(_pattern(form, "words" if form in loose else tokens) for form in ordered),
                                    re.IGNORECASE * bool(tokens or loose)) if ordered else None)
        bare = {_SKELETON.sub("", form) for form in forms}  # see ``holds_part``
        self._runs = {form[i:i + PARTIAL_RUN] for form in forms | bare for i in range(len(form) - PARTIAL_RUN + 1)}
        self._lower_runs = {run.lower() for run in self._runs}

    def learn(self, secret: str) -> None:
        """Adds a secret known only once the load runs, an OAuth2 access token: masked from then on, and looked for
        in what the API sends (helper-111: one the API echoed into its records was stored in the table). One shorter
        than ``LEARNED_LEAST`` is no token: "Token demo" refused every record saying "demo city" (helper-113). Up to
        ``LEARNED_MOST`` of them: a signature made afresh for each request is no secret to reuse, and learning each
        rebuilt the masks on every request (helper-113: twice the time, 300 MB more)."""
        if (not isinstance(secret, str) or len(secret) < LEARNED_LEAST or secret in self._given
                or self._learned >= LEARNED_MOST):
            return
        with _LEARNING:
            if secret not in self._given and self._learned < LEARNED_MOST:
                learned = self._learned + 1
                self.__dict__.update(Redactor([*self._given, secret], self.mask).__dict__)
                self._learned = learned

    def __call__(self, text: str) -> str:
        if self._pattern is None or not isinstance(text, str):
            return text
        text = self._pattern.sub(self.mask, text)
        return self._cut_off(text) if "..." in text else text

    def _cut_off(self, text: str) -> str:
        """Masks the start of a secret that a message cut off to shorten a value ("got 'http://h/?k=sk_live_Zq8x...'"),
        which no mask of the whole matches (helper-149): ``PARTIAL_RUN`` characters or more of one, before "..."."""
        for cut in reversed([m.start() for m in re.finditer(r"\.\.\.", text)]):
            longest = max((n for form in self._forms for n in range(min(len(form) - 1, cut), PARTIAL_RUN - 1, -1)
                           if text.startswith(form[:n], cut - n)), default=0)
            if longest:
                text = text[:cut - longest] + self.mask + text[cut:]
        return text

    def holds_part(self, text: str) -> bool:
        """Whether ``text`` holds ``PARTIAL_RUN`` characters in a row of a secret, also once decoded (``%54``,
        ``&#84;``, ``\\u0054``) or with everything but letters and digits left out (a secret split by line
        breaks, zero-width spaces or a UTF-16 body's NUL bytes): for what an API sent, where a secret may stand
        cut off or broken apart, which no mask of the whole matches (helper-105, helper-106)."""
        if not self._runs or not isinstance(text, str):
            return False
        decoded, twice = {text}, text
        for _ in range(3):  # an API echoing a URL inside a URL encodes it twice (helper-107)
            twice = unquote(twice)
            decoded.add(twice)
        decoded |= {html.unescape(text), _U_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)}
        for run in _BASE64.findall(text):  # an echoed "Authorization: Basic ..." header (helper-107), or hex
            for decode in (lambda r: base64.b64decode(r + "=" * (-len(r) % 4)), bytes.fromhex):
                try:
                    decoded.add(decode(run).decode("utf-8", "ignore"))
                except ValueError:
                    pass
        for run in _HEX_PAIRS.findall(text):  # bytes as hex pairs with separators, or \x escapes (helper-109)
            try:
                decoded.add(bytes.fromhex(_NOT_HEX.sub("", run.replace("\\x", ""))).decode("utf-8", "ignore"))
            except ValueError:
                pass
        # in any letter case: an API that upper-cases what it echoes (helper-108)
        forms = {f.lower() for form in decoded for f in (form, _SKELETON.sub("", form))}
        return any(form[i:i + PARTIAL_RUN] in self._lower_runs
                   for form in forms for i in range(len(form) - PARTIAL_RUN + 1))

    def position(self, text: str, at: int) -> int:
        """Where character ``at`` of ``text`` stands once ``text`` is masked (at the mask where one covers it)."""
        shift = 0
        for found in (self._pattern.finditer(text) if self._pattern is not None else ()):
            if found.start() >= at:
                break
            if found.end() > at:
                return found.start() + shift
            shift += len(self.mask) - (found.end() - found.start())
        return at + shift

    def echoed(self, content: bytes) -> bool:
        """Whether a secret (of 4 characters or more) is somewhere in ``content``."""
        if any(form in content for form in self._in_bodies):
            return True
        return self._escaped_in_bodies is not None and self._escaped_in_bodies.search(content) is not None

    def __bool__(self) -> bool:
        return self._pattern is not None


def _forms_of(secret: str) -> set[str]:
    """The forms ``secret`` may show in: as it is, URL-encoded, and escaped as repr() and JSON write it."""
    # as it is, URL-encoded, and escaped as repr() and JSON write it (messages quote
    # values with repr: a backslash or a quote in the key would change its form)
    # (percent-encoded with "/" kept too: how most clients and people encode a URL)
    # (an escape matches in any case, "%2f" or "%2F": see _pattern)
    # a lone surrogate no URL can carry (the key is refused for it): its other forms still masked
    sendable = secret.encode("utf-8", "surrogatepass")
    encoded = {quote(sendable, safe=""), quote(sendable), quote_plus(sendable),
               quote_plus(sendable, safe="/"),
               # as requests writes a URL it was given: only what no URL may hold escaped ("+/=" kept,
               # "é" as %C3%A9), which no form above matched (helper-128)
               quote(sendable, safe="!#$%&'()*+,/:;=?@[]~")}
    as_json = {json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    # JSON may escape "/" too (PHP's json_encode does by default)
    as_json |= {form.replace("/", "\\/") for form in as_json}
    # and quoted in SQL, a quote doubled ('tok''en': helper-143)
    in_sql = {secret.replace("'", "''"), secret.replace('"', '""')}
    return {secret, repr(secret)[1:-1], *as_json, *encoded, *in_sql}


def _pattern(form: str, tokens: bool | str = False) -> str:
    # RFC 3986 lets an escape's hex digits be either case, and servers echo "%2f", "%2F" or
    # both in one URL: each escape matches in any case
    loose = _ESCAPE.sub(lambda m: "%" + "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c
                                              for c in m.groups()), re.escape(form))
    if tokens == "words":  # a strong secret, wherever it stands: glued to a name ("Raw_<key>" showed it: helper-151)
        return loose
    if tokens:  # not inside a longer name either: DB_PASSWORD=postgres read "***_tables" (helper-143)
        return rf"(?<![A-Za-z0-9_]){loose}(?![A-Za-z0-9_])"
    # a short one of letters only, a username "user", is a word: its own, not the middle of "username" (helper-155)
    if len(form) >= WHOLE_WORD_BELOW and not (len(form) < PARTIAL_RUN and form.isalpha()):
        return loose
    return rf"(?<![A-Za-z0-9]){loose}(?![A-Za-z0-9])"


class RedactingFilter(logging.Filter):
    """Logging filter that renders a record's message and traceback, redacted."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.redactor(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


@contextmanager
def redacted_logging(redactor: Redactor, loggers: Iterable[str] = NOISY_LOGGERS) -> Iterator[None]:
    """Masks the secrets in every record created on ``loggers`` and their children while the block runs; installed
    with no secret known yet too, since a load learns its tokens as it runs (helper-113)."""
    log_filter = RedactingFilter(redactor)
    # A logger's filters see only the records made on it, not those its children pass up
    # to its handlers: every logger in each namespace gets the filter.
    names = set(loggers) | {name for name in list(logging.Logger.manager.loggerDict)
                            if any(name.startswith(prefix + ".") for prefix in loggers)}
    targets = [logging.getLogger(name) for name in sorted(names)]
    for logger in targets:
        logger.addFilter(log_filter)
    try:
        yield
    finally:
        for logger in targets:
            logger.removeFilter(log_filter)


class _LiveSources(logging.Filter):
    """Masks the secrets of every source alive in the process, in records on noisy loggers.

    ``redacted_logging`` covers ``load``; a source built with ``build_source`` may also be
    iterated on its own (``list(source.resources["events"])``), where urllib3 logs each request
    line, key included, at DEBUG. This filter stays installed; it knows a source's secrets while
    the source's redactor is alive.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: weakref.WeakSet[Redactor] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        redactors = [r for r in list(self.live) if r]
        if redactors:
            text = record.getMessage()
            for redactor in redactors:
                text = redactor(text)
            record.msg, record.args = text, None
        return True


_LIVE = _LiveSources()
_GUARD_LOCK = threading.Lock()


def guard_logs(redactor: Redactor) -> None:
    """Masks ``redactor``'s secrets in the noisy loggers' records for as long as it lives (it may learn some)."""
    with _GUARD_LOCK:
        _LIVE.live.add(redactor)
        names = set(NOISY_LOGGERS) | {name for name in list(logging.Logger.manager.loggerDict)
                                      if any(name.startswith(prefix + ".") for prefix in NOISY_LOGGERS)}
        for name in names:
            logger = logging.getLogger(name)
            if _LIVE not in logger.filters:
                logger.addFilter(_LIVE)


# Names of environment variables that hold secrets: the kit's API_KEY, and dlt's credentials written as variables
# (SOURCES__ANALYTICS__CREDENTIALS__API_KEY, DESTINATION__POSTGRES__CREDENTIALS__PASSWORD).
_SECRET_NAME = re.compile(r"(^|_)(API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|TOKEN|SECRET|PASSWORD|PASSWD)$"
                          r"|(^|_)CREDENTIALS(_|$)", re.IGNORECASE)
# Shorter values of such variables are no secrets worth masking in what a person reads: a TOKEN=1 in the environment
# would mask every "1" standing alone in a message ("LINE ***:").
LOCAL_LEAST = 6


def known_mask(with_loads: bool = True) -> Redactor:
    """A mask of every secret this process knows: those of the loads it runs, those in the environment, and those in
    ``.dlt/secrets.toml`` here. For what a person typed, SQL quoting their own key (helper-142). Built once for all
    an error's texts: it reads the file and the environment. A load's key is masked as a whole token only: a
    notebook's earlier load with the key "test" made a path read "/tmp/py***-of-root" in a reader's error. Those of
    the environment and the file are kept to strong ones (``_local_secrets``: MY_SECRET=onvers made "Conversion
    Error" read "C***ion Error", helper-143) and masked wherever they stand ("Raw_<key>": helper-151).
    ``with_loads``: the loads' keys too (not for a load's own errors, which its redactor masked)."""
    loads = [secret for redactor in list(_LIVE.live) for secret in redactor._given] if with_loads else []
    # the environment's and the file's are strong (6 characters or more, not a plain word): masked inside names too
    return Redactor(loads, tokens=True, words=_local_secrets())


def _local_secrets() -> list[str]:
    import os
    import tomllib

    # and any variable's URL with a password in it (DATABASE_URL=postgresql://u:pw@h/db: helper-144)
    values = [value for name, value in os.environ.items() if _SECRET_NAME.search(name) or "@" in value and "://" in value]
    try:
        with open(".dlt/secrets.toml", "rb") as file:
            found = [tomllib.load(file)]
    except (OSError, ValueError):  # none, or one dlt itself says it cannot read
        found = []
    while found:
        for name, value in found.pop().items():
            if isinstance(value, dict):
                found.append(value)
            elif isinstance(value, str) and (_SECRET_NAME.search(name) or name.lower() in ("key", "auth")):
                values.append(value)
    # a plain word is no secret worth masking in what a person reads: POSTGRES_PASSWORD=postgres (docker's default)
    # made advice read "[destination.***.credentials]" and paths "/tmp/***/data.duckdb" (helper-144)
    return [part for value in values for part in _parts(value) if len(part) >= LOCAL_LEAST and not part.isalpha()]


def _parts(value: str) -> list[str]:
    """A secret value and the secrets inside it: a connection string's password, its query's tokens
    (``postgresql://user:pass@host``, ``md:db?motherduck_token=...``: only the whole was masked, helper-143)."""
    from urllib.parse import parse_qsl, urlsplit

    parts = [value]
    try:
        url = urlsplit(value)
        parts += [url.password or "", unquote(url.password or "")]  # as typed, not as the URL escapes it (helper-144)
    except ValueError:
        return parts
    query = url.query or value.partition("?")[2]
    return parts + [item for name, item in parse_qsl(query) if _SECRET_PARAM.search(name)]


# Query parameters of a connection string that hold secrets: sslpassword, motherduck_token, access_key_id...
_SECRET_PARAM = re.compile(r"pass|pwd|token|secret|key|credential", re.IGNORECASE)
