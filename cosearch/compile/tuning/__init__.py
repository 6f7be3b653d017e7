"""Tuning: settings (``config``), where trials go (``allocate``), the runner that measures
(``runner``) and the in-process builder (``builder``), a tuning call (``session``:
prepare / run / collect), re-timing the best records (``confirm``), MetaSchedule's logging
(``logs``) and the early-stop rules (``stop``)."""
