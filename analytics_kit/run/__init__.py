"""One load end to end: the stages run in order, progress shown, failures explained, a report returned."""
