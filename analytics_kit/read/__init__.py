"""Stage 4: the loaded tables read back (query, tables, describe, state)."""
