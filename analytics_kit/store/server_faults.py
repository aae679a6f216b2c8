"""What stops the kit from reaching a database server (a warehouse destination), in words that say what to fix.

A wrong password or port ended a load with "Fix the cause and run the load again", and a reader with advice on SQL
dialects though no SQL had run (helper-124): neither named the credentials, which no second run would change.
"""

from __future__ import annotations

from typing import Callable, Iterable

# the driver's words (psycopg2's OperationalError; other drivers say the like) for a connection never made
_CONNECTING = ("connection to server", "could not connect", "password authentication failed", "connection refused",
               "could not translate host name", "timeout expired", "no pg_hba.conf entry", "does not exist",
               "authentication failed", "name or service not known", "invalid port number", "invalid sslmode",
               "invalid connection option", "invalid dsn", "missing \"=\" after", "invalid integer value")


def unreachable_server(errors: Iterable[BaseException], destination: str, label: str,
                       redact: Callable[[str], str]) -> tuple[str, str] | None:
    """(what, what to do) where one of ``errors`` (an error and its causes) says the server at ``destination`` could
    not be connected to, or its credentials could not be read; None otherwise."""
    for error in errors:
        text = str(error).strip()
        first = redact(text.splitlines()[0] if text else type(error).__name__)[:200]
        connecting = type(error).__name__ == "OperationalError" and any(w in text.lower() for w in _CONNECTING)
        # a port that is no number, read from the credentials as int() reads it
        port = isinstance(error, ValueError) and "invalid literal for int()" in text
        if connecting or port:
            credentials = f"DESTINATION__{destination.upper()}__CREDENTIALS"
            return (f"could not connect to {label}: {type(error).__name__}: {first}",
                    f"Check the server's address and login in {credentials} (or [destination.{destination}."
                    "credentials] in .dlt/secrets.toml): host, port (a number), user, password and database; and "
                    "that the server runs and takes connections from this machine.")
    return None
