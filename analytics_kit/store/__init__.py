"""Stage 3: where rows land (the DuckDB file or a dlt destination), its lock, and recovery."""
