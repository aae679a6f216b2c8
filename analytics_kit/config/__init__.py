"""Stage 1: the integration guide's config dict, checked and split into dlt's part and the kit's."""
