"""Stage 2: the API's pages fetched, checked and handed to dlt (sessions, paging, Arrow)."""
