"""Turns whatever a dlt run raised into one ``LoadError`` that says what to do.

The message is built from redacted parts only, and the caller raises it outside
the ``except`` block, so no chained exception carries an unredacted URL.
"""

from __future__ import annotations

import errno
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import requests

from analytics_kit import seam
from analytics_kit.config.credentials import asks_token, rejected
from analytics_kit.errors import PAGE_REQUEST, KitError, LoadError, MissingSecretError, causes
from analytics_kit.fetch.open_files import open_files_error, out_of_files
from analytics_kit.fetch.page_checks import cursor_failure
from analytics_kit.fetch.records import body_shown
from analytics_kit.fetch.retry import UNREACHABLE
from analytics_kit.fetch.shared_cookies import sent_cookies_in_parallel
from analytics_kit.fetch.stats import LoadStats
from analytics_kit.fetch.transport import host_of, request_text, shown_origin, unreachable
from analytics_kit.interrupts import is_interrupt
from analytics_kit.redact import Redactor
from analytics_kit.run.data_faults import data_fault, normalize_fault
from analytics_kit.store.database import in_use_here
from analytics_kit.store.file_faults import conflicting, unreadable, unwritable
from analytics_kit.store.server_faults import unreachable_server

def _short(text: str, limit: int = 300) -> str:
    """dlt quotes whole response bodies in some messages: keep the start only."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit:,} more characters)"


def interrupted(step: str | None, stats: LoadStats, error: BaseException | None = None) -> LoadError:
    """The error of a load interrupted (during ``step``; by ``error``'s signal, where it says one: a SIGTERM read
    "Ctrl-C", helper-141); in dlt's load step a table's job may have committed, each table whole, the load not."""
    how = next((str(e) for e in causes(error) if isinstance(e, KeyboardInterrupt) and str(e)), None) if error else None
    how = how or "Ctrl-C, or the notebook's stop button"
    return LoadError(
        f"The load was interrupted{f' during {step}' if step else ''} ({how})" +
        (" before dlt recorded it complete." if stats.in_dlts_load else "; nothing from this run was committed."),
        guidance=f"Run the load again when you are ready. {_aftermath(stats, step)}", interrupted=True)


def tidying_failed(error: BaseException, redactor: Redactor) -> LoadError:
    """The error of a load that failed after dlt had committed it: the message must not say nothing was."""
    root = next((e for e in reversed(list(causes(error))) if str(e).strip()), error)  # not dlt's wrapper
    said = _short(redactor(f"{type(root).__name__}: {root}"))
    return LoadError(f"The load is committed (ak.history() lists it), but tidying up after it failed: {said}",
                     guidance="The tables hold this run's data. If this repeats, check the disk and the database.")


@contextmanager
def starting() -> Iterator[None]:
    """An interrupt while a load starts (before anything is fetched) is the load's error too (helper-85)."""
    try:
        yield
    except KitError:
        raise
    except BaseException as error:  # noqa: BLE001 - an interrupt becomes the load's error, anything else goes on
        if not is_interrupt(error):
            raise
        failure = interrupted("its start", LoadStats(), error)
    else:
        return
    raise failure  # outside the except block: nothing chains the interrupt's frames


def _aftermath(stats: LoadStats, step: str | None) -> str:
    """What a failure left behind, for the guidance."""
    if stats.mode == "full_refresh" and stats.drops_tables and step in (None, "load"):
        return (("The old tables were kept aside and are put back (by the next load, if that was interrupted too)"
                 if stats.kept_aside else
                 "This full refresh may have dropped the tables already") +
                "; the next load, whatever its mode, runs it again and reloads everything.")
    if stats.mode == "full_refresh" and stats.swaps_appends and step in (None, "load"):
        return ("Each table is swapped in one transaction, but one this config appends to may hold this refresh's "
                "rows already; the next load, whatever its mode, runs the full refresh again.")
    if stats.mode == "full_refresh":
        return ("Each table is swapped in one transaction: it holds either all of this refresh's rows or its old "
                "ones, and the cursors stay at the last completed load.")
    return ("Nothing is lost: each table's merge is all-or-nothing and the cursors move only when a load is "
            "recorded complete, so the next run fetches this run's data again.")


def _cause(error: BaseException, redactor: Redactor) -> str:
    """The operating system's reason inside a requests/urllib3 connection error."""
    text = redactor(str(error))
    # http.client's own reason first: it stands after urllib3's "Connection aborted" in the text
    found = re.search(r"(?:BadStatusLine|RemoteDisconnected)\([^)]*\)", text) or re.search(
        r"\[Errno -?\d+\] [^'\")]+|Connection aborted|Connection broken[^'\")]*", text)
    return _short(found.group(0).strip(), 160) if found else _short(text, 160)


def find_cause(error: BaseException, kind: type | tuple[type, ...]) -> BaseException | None:
    """``error`` or the first exception of ``kind`` in its chain (dlt wraps a step's errors)."""
    return next((e for e in causes(error) if isinstance(e, kind)), None)


def explain(error: BaseException, *, redactor: Redactor, stats: LoadStats, database: str,
            destination: str = "duckdb", workdir: str | None = None) -> KitError:
    """The ``LoadError`` for ``error``, with no secret in it."""
    resource = next(
        (name for e in causes(error) if (name := getattr(e, "pipe_name", None) or getattr(e, "resource_name", None))),
        None,
    )
    where = f"resource '{resource}'" if resource else "the API"
    failed = next((e.request for e in causes(error) if isinstance(getattr(e, "request", None), requests.PreparedRequest)), None)
    # The page that failed, as the pager tagged it: with pages fetched concurrently the last
    # request sent is usually another one.
    tagged = next((t for e in causes(error) if (t := getattr(e, PAGE_REQUEST, None))), None)
    request = tagged or (request_text(failed, redactor) if failed is not None else stats.last_request.get(resource or "", ""))
    # a request the kit's sessions never sent is dlt's own (an OAuth token request), retried by dlt's settings
    by_dlt = failed is not None and request not in stats.attempts
    attempts = ("dlt's own retries (RUNTIME__REQUEST_MAX_ATTEMPTS, 5 attempts by default)" if by_dlt
                else f"{stats.attempts.get(request, 1)} attempt(s)")
    host = host_of(failed.url) if failed is not None and failed.url else "the API's host"

    # The kit's own errors raised during extraction already say what to do.
    own = find_cause(error, KitError)
    if own is not None:
        return own.redacted(redactor)
    if out_of_files(causes(error)):  # the process's limit, reached in dlt's steps
        return open_files_error(f"ran dlt's {stats.step or 'load'} step", _aftermath(stats, stats.step))

    if is_interrupt(error):
        return interrupted(getattr(error, "step", None) or stats.step, stats, error)
    if destination != "duckdb" and (server := unreachable_server(causes(error), destination, database, redactor)):
        return LoadError(f"The load {server[0]}.", guidance=f"{server[1]} {_aftermath(stats, stats.step)}",
                         database=database)

    refused = next((e for e in causes(error) if getattr(e, UNREACHABLE, None)), None)
    if refused is not None:
        address, _, why = getattr(refused, UNREACHABLE).partition(": ")
        url = redactor(failed.url) if failed is not None and failed.url else None
        base = f" ({shown_origin(url) if '://' in url else url})" if url else ""
        fix = (f"Check the scheme of client.base_url{base}: http:// for a plain HTTP port; for a certificate "
               "from a private authority set REQUESTS_CA_BUNDLE." if "TLS" in why else
               f"Check the host name in client.base_url{base}, and your network's DNS." if "resolve" in why else
               f"Check the host and port in client.base_url{base}; if the server is down or restarting, run the "
               "load again once it is up.")
        return LoadError(
            f"Could not connect to {address} for {where}: {why}. The API had not answered in this run, so the "
            "kit did not retry; nothing from this run was committed.",
            guidance=fix, resource=resource, host=address)

    http = find_cause(error, requests.HTTPError)
    if http is not None and http.response is not None:
        status = http.response.status_code
        # a token endpoint's 400 (invalid_client) or 404 was blamed on the resource's path or params (helper-155)
        if status in (401, 403) or asks_token(http.response.request) and status not in (408, 429) and status < 500:
            cookies = ("" if not sent_cookies_in_parallel(http.response) else
                       " The request also carried cookies the API set during this load: an API whose session "
                       "cookie changes with every answer needs its pages one at a time: set concurrency: 1 on the "
                       "endpoint (or load(..., concurrency=1)).")
            credentials, guidance = rejected(http.response.request, lambda text: redactor(text) != text)
            forbidden = (" (403: it knows them, but they give no access to this endpoint: check their permissions)"
                         if status == 403 and credentials != "request" else "")
            return LoadError(f"The {'token endpoint' if credentials == 'client credentials' else 'API'} rejected the "
                             f"{credentials} (HTTP {status}) for {where}{forbidden}.",
                             guidance=guidance + cookies, resource=resource, status=status)
        url = redactor(failed.url) if failed is not None and failed.url else request
        if status in (404, 410) and resource in stats.children:
            return LoadError(
                f"The API answered HTTP {status} (not found) for {where} on {url}, a request made for one record "
                "of its parent resource; nothing from this run was committed.",
                guidance="If some parent records have no such sub-resource, let dlt skip those answers: add "
                "\"response_actions\": [{\"status_code\": 404, \"action\": \"ignore\"}] to the endpoint. If none "
                "has one, check the endpoint's path and its parent field against the API's documentation.",
                resource=resource, status=status, request=request)
        if status in (404, 410) and stats.answers_ok.get(resource or ""):
            return LoadError(
                f"The API answered HTTP {status} (not found) for {where} on {url}, after it had answered "
                f"{stats.answers_ok[resource or '']} request(s) of this run on that resource; nothing from this run "
                "was committed.",
                guidance="The path works: the API stopped serving the listing part-way (its data may have shrunk "
                "while it was paged, or the API is failing). Run the load again; if it happens again, tell the "
                "API's provider which request answered 404.",
                resource=resource, status=status, request=request)
        if status in (404, 410):
            return LoadError(
                f"The API answered HTTP {status} (not found) for {where} on {url}; nothing from this run was "
                "committed.",
                guidance="The path or the base URL is wrong: check client.base_url and the resource's "
                f"endpoint.path against the API's documentation. A {status} is not retried: it would answer the same.",
                resource=resource, status=status, request=request)
        if 400 <= status < 500 and status not in (408, 429):
            return LoadError(
                f"The API refused the request for {where} with HTTP {status} on {url}; nothing from this run "
                "was committed.",
                guidance="The request as the config builds it is not one the API accepts: check the endpoint's "
                "params, paginator and method against the API's documentation; the response body may say which.",
                resource=resource, status=status, request=request)
        if status in (501, 505):
            # "not implemented": a request this server never serves (a method, a token URL), not an overload
            return LoadError(
                f"The server answered HTTP {status} ({http.response.reason or 'not supported'}) for {where} on "
                f"{url}: it does not serve this request at all; nothing from this run was committed.",
                guidance="Check the request's URL and method against the API's documentation: the endpoint's path "
                "and method, or the auth block's token URL. Waiting or retrying does not change this answer.",
                resource=resource, status=status, request=request)
        # not asked again: a status the policy does not retry (507, 599), which max_retries cannot change (helper-146)
        unretried = not by_dlt and status not in stats.retried_statuses.get(resource or "", frozenset({status}))
        return LoadError(
            f"{where[0].upper() + where[1:]} failed with HTTP {status} on {request}"
            + (", a status the resource's error_handler does not retry" if unretried else f" after {attempts}")
            + "; nothing from this run was committed.",
            guidance=f"Run the load again later. If the API answers {status} while it is failing or overloaded, add "
            f"{status} to error_handler.retry_on_status_codes, so that it is retried with the backoff (raising "
            "max_retries alone changes nothing for it)." if unretried else "The API is failing or overloaded: run the "
            "load again later, or raise " + ("RUNTIME__REQUEST_MAX_ATTEMPTS (and RUNTIME__REQUEST_BACKOFF_FACTOR), "
            "dlt's settings for its own requests," if by_dlt else "error_handler.max_retries (and backoff_factor)")
            + " to wait longer for it.", resource=resource, status=status, request=request)

    timeout = find_cause(error, requests.Timeout)
    if timeout is not None:
        what = (f"could not be connected to ({_short(redactor(str(timeout)), 160)})"
                if isinstance(timeout, requests.ConnectTimeout) else f"sent {timeout}")
        return LoadError(
            f"The API at {host} timed out for {where}: it {what} on {request or 'the first request'}, "
            f"{attempts}; nothing from this run was committed.",
            guidance="If the API is slow rather than down, raise error_handler.timeout (seconds for one attempt, "
            "connecting and reading); one request takes at most attempts x timeout + the backoff waits.",
            resource=resource, host=host, request=request,
        )

    mislabelled = find_cause(error, requests.exceptions.ContentDecodingError)
    if mislabelled is not None:  # it said "the connection closed" (helper-102); a retry gets the same bytes
        coding = "".join(re.findall(r"content-encoding: (\w+)", str(mislabelled))[:1]) or "compressed"
        return LoadError(f"The API at {host} sent a body for {where} on {request or 'the first request'} that is not "
                         f"{coding}, though its header says Content-Encoding: {coding}, {attempts}; nothing from this "
                         "run was committed.", guidance="The API (or a proxy in between) labels its answers wrongly: "
                         "ask for them uncompressed with client.headers {\"Accept-Encoding\": \"identity\"}, and tell "
                         "the API's maintainers.", resource=resource, host=host, request=request)
    broken = find_cause(error, requests.exceptions.ChunkedEncodingError)
    if broken is not None:
        return LoadError(
            f"The API at {host} broke off its response for {where} on {request or 'the first request'} "
            f"({type(broken).__name__}: {_short(redactor(str(broken)), 160)}), {attempts}; "
            "nothing from this run was committed.",
            guidance="The connection closed in the middle of a response. Run the load again; if it keeps "
            "happening, raise error_handler.max_retries.",
            resource=resource, host=host, request=request,
        )
    loop = find_cause(error, requests.TooManyRedirects)
    if loop is not None:
        return LoadError(
            f"The API at {host} kept redirecting {request or 'the first request'} for {where} "
            f"({_short(redactor(str(loop)), 120)}): a redirect loop; nothing from this run was committed.",
            guidance="Check client.base_url and the endpoint's path against the API's documentation.",
            resource=resource, host=host, request=request,
        )

    connection = find_cause(error, requests.ConnectionError)
    if connection is not None:
        dropped = unreachable(connection) is None  # a server took the connection and closed it (a reset, no answer)
        return LoadError(
            f"The API at {host} {'dropped the connection' if dropped else 'could not be reached'} for {where} on "
            f"{request or 'the first request'}{' without a complete answer' if dropped else ''}: "
            f"{_cause(connection, redactor)}; {attempts}; nothing from this run was committed.",
            guidance="Check client.base_url (scheme, host and port) and your network, then run the load again."
            if not dropped else "The server, or a proxy in front of it, closed the connection (a crash, a restart, "
            "an overload). Run the load again; if it keeps happening, raise error_handler.max_retries."
            if stats.answered else "Something on that port took the connection and closed it without an HTTP "
            "answer: check that client.base_url (scheme, host and port) points at the API, then run the load again.",
            resource=resource, host=host)

    # orjson's error subclasses json's; requests' simplejson's where installed (dlt's paginators use response.json())
    decode = find_cause(error, (json.JSONDecodeError, requests.exceptions.JSONDecodeError))
    if decode is not None:
        return LoadError(  # no request of the kit's: dlt's own, for an OAuth token ("on  (": helper-150)
            f"{where[0].upper() + where[1:]} got a response {getattr(decode, 'what', 'that is not valid JSON')} on "
            f"{request or 'a request dlt sent itself (the auth block token URL, say)'} "
            f"({type(decode).__name__}: {_short(redactor(str(decode)))}{body_shown(decode, redactor)}); nothing from "
            "this run was committed.",
            guidance=getattr(decode, "guidance", None) or "The server answered with something else than the API's "
            "JSON: an HTML error page, a proxy or login page, or a body cut off in transit. Check client.base_url and "
            f"the endpoint path{'' if request else ', or the token URL'}, then run the load again.", resource=resource,
            request=request)

    missing = next((e for e in causes(error) if seam.is_missing_config(e)), None)
    if missing is not None:
        name = destination
        detail = _short(redactor(str(missing).splitlines()[-1] if "\n" not in str(missing) else str(missing).splitlines()[1]), 160)
        return MissingSecretError(
            f"The credentials for destination {name!r} are not set or incomplete ({detail.strip()}).",
            guidance=f"Set DESTINATION__{name.upper()}__CREDENTIALS (for postgres: "
            "postgresql://user:password@host:5432/database), or put them under "
            f"[destination.{name}.credentials] in .dlt/secrets.toml. They never go in code.",
        )

    db = find_cause(error, duckdb.Error)
    text = str(db).lower() if db is not None else ""
    step = getattr(error, "step", None)
    for cause in causes(error):
        if fault := unreadable(cause, database):
            return LoadError(f"The load stopped: {fault[0]}; this load changed nothing in it.", guidance=fault[1],
                             database=database)
        if fault := unwritable(cause, database, workdir) or conflicting(cause, database):
            return LoadError(f"The load failed{f' in {step}' if step else ''}: {fault[0]}.",
                             guidance=f"{fault[1]} {_aftermath(stats, step)}", database=database)
    if db is not None and ("conflicting lock" in text or "could not set lock" in text or in_use_here(db)):
        return LoadError(
            f"The DuckDB file {database} is open in another connection, so the load cannot write to it.",
            guidance="Close the other connection (con.close() in your notebook, or quit the duckdb CLI) "
            "and run the load again. analytics_kit.query() closes its connections for you.",
            database=database,
        )
    # dlt moves a file it could not write with os.rename, so the disk filling up can also
    # show as "Invalid cross-device link": any ENOSPC in the chain counts
    full = next((e for e in causes(error) if isinstance(e, OSError) and e.errno == errno.ENOSPC), None)
    if full is not None or "no space left on device" in text:
        step = next((s for e in causes(error) if (s := getattr(e, "step", None))), None)
        # a move or copy names its destination second (dlt moves a job from the system's temp folder: helper-103)
        written = Path(os.fsdecode(getattr(full, "filename2", None) or getattr(full, "filename", None) or ""))
        written = written.absolute()
        folder = next((p for p in (written, *written.parents) if p.name.endswith(".state")), None)
        if folder is not None:
            # dlt's working files (extracted pages, load packages, its state) live in the kit's <name>.state folder
            when = f"while dlt wrote its working files in {folder} (its {step or 'extract'} step)"
        elif db is not None or step == "load" and not workdir:
            when = f"while writing to {database}"  # DuckDB's own write (its .wal too)
        elif step == "load":  # a write that names no file: DuckDB's or dlt's own, in the .state folder (helper-124)
            when = f"while writing to {database} or dlt's working files in {workdir} (its load step)"
        else:  # dlt's extract and normalize steps write only to its working folder
            files = f", writing its working files in {workdir}" if workdir else ""
            when = (f"while preparing the data (dlt's {step or 'extract'} step{files}), before anything was written "
                    f"to {database}")
        return LoadError(
            f"The disk ran out of space {when}: {_short(redactor(str(db or full)), 200)}",
            guidance="Free some space (or move the file to a larger disk) and run the load again. "
            + _aftermath(stats, step),
            database=database,
        )
    if "not null constraint failed" in text and "_dlt_root_id" in text:
        # dlt links nested rows to their root (_dlt_root_id) in a merge, not in an append or replace
        return LoadError(
            f"A nested table in {database} was made by a load that did not link its rows to their root rows "
            f"(an append, or an older full refresh), and this merge needs that link: {_short(str(db), 200)}",
            guidance="Run a full refresh once (analytics-kit load --full-refresh, or mode='full_refresh'): it "
            "rebuilds the tables with the link. " + _aftermath(stats, "load"),
            database=database,
        )
    if "failed to change memory limit" in text:
        # dlt SETs the cap on the database instance, which a connection of this process to the
        # same file shares: one holding a large result keeps DuckDB from lowering it
        return LoadError(
            f"DuckDB could not lower its memory to the kit's cap for {database}: another connection to the file in "
            f"this process holds more ({_short(str(db), 200)}).",
            guidance="Close that connection, or read its result to the end (con.close() in your notebook), and run "
            "the load again; or raise the cap with ANALYTICS_KIT_DUCKDB_MEMORY (e.g. 1GB). " + _aftermath(stats, "load"),
            database=database,
        )
    # at a commit DuckDB says "could not allocate block ... (30.3 MiB/30.5 MiB used)"
    if isinstance(db, duckdb.OutOfMemoryException) or any(
            words in text for words in ("out of memory", "could not allocate", "failed to allocate")):
        return LoadError(
            f"DuckDB ran out of the memory the kit allows it while loading into {database}: {_short(str(db), 200)}",
            guidance="Raise the limit with ANALYTICS_KIT_DUCKDB_MEMORY (e.g. 1GB) and run the load again. "
            + _aftermath(stats, "load"), database=database)

    chain = list(causes(error))
    # the deepest error that says something: dlt's own explanation, not the bare StopIteration it was raised
    # while handling ("The load failed in extract: StopIteration:", helper-52); dlt's incremental explains a
    # cursor the records lack better than the KeyError it was raised from (helper-53)
    incremental = seam.incremental_errors()
    root = next((e for e in chain if isinstance(e, incremental)), None) or \
        next((e for e in reversed(chain) if str(e).strip()), chain[-1])
    text = _short(redactor(str(root)))
    if text.rstrip().endswith(":") and not str(chain[-1]).strip():
        text = f"{text.rstrip()} {type(chain[-1]).__name__}"  # "... caused an exception:" and a bare StopIteration
    if isinstance(root, incremental[0]) or isinstance(root, incremental[2]):
        return cursor_failure(root, where, resource, missing=isinstance(root, incremental[0]))
    if fault := data_fault(root, text, where, resource):
        return fault
    if step == "normalize" and (fault := normalize_fault(root, text, stats.changed_types, resource)):
        return fault
    if "total" in text.lower() and "not found" in text.lower():
        return LoadError(
            f"{where[0].upper() + where[1:]} got a page without the total record count on {request}: {text}",
            guidance="Point the offset paginator's total_path option at the field that holds the total "
            "(e.g. \"paginator\": {\"type\": \"offset\", \"limit\": 100, \"total_path\": \"meta.total\"}), "
            "or set total_path to null with stop_after_empty_page if the API gives no total.",
            resource=resource, request=request)
    return LoadError(
        f"The load failed{f' in {step}' if step else ''}: {type(root).__name__}: {text}",
        guidance=f"Fix the cause and run the load again. {_aftermath(stats, step)}",
        resource=resource,
    )
