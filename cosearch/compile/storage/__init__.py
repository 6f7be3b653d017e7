"""Storage: the per-target schedule database (MetaSchedule's own two JSON-lines files,
shared under a lock) and the per-task tuning history beside it. Both are append-only
JSON lines written through ``cosearch.jsonl``."""
