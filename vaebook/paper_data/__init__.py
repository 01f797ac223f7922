"""CSV copies of the paper's tables; see SOURCE.md and :mod:`vaebook.paper`."""
