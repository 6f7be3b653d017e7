"""Beyond one process: where a search's portable work runs (``pool``: inline or Ray workers),
what workers compute (``screen``), and the local CPU's measurement lease (``lease``).
See docs/distributed.md."""
