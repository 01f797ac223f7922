"""One file per table of the paper, each holding only that table's science (which models, datasets and
scales; how to evaluate one unit; which claims it checks; which figures). Each module defines
``EXPERIMENT`` (or ``EXPERIMENTS``), an instance of :class:`vaebook.lab.Experiment`; the runtime
(:mod:`vaebook.lab`) runs them and the page of the same name shows them."""
