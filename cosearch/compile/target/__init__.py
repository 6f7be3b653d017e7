"""Targets and machine identity: named compilation targets (``spec``: one JSON file per
target in ``targets/``, the CPU identity a target resolves to, its machine key) and the
binding of a schedule database to the identity it was tuned for (``binding``)."""

from cosearch.compile.target.spec import (
    EXPORT_KINDS,
    IDENTITY_MUST_MATCH,
    MEASURE_KINDS,
    RPCSettings,
    TargetSpec,
    features_run_here,
    find_target_file,
    host_cpu,
    identity_hash,
    identity_of,
    list_targets,
    load_target,
)

__all__ = ["EXPORT_KINDS", "IDENTITY_MUST_MATCH", "MEASURE_KINDS", "RPCSettings", "TargetSpec", "features_run_here",
           "find_target_file", "host_cpu", "identity_hash", "identity_of", "list_targets", "load_target"]
