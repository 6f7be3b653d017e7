"""The compiler side of cosearch, one folder per concept (see docs/architecture.md):

- ``target/``    named targets, machine identity, a database bound to its identity
- ``frontend/``  import (torch / ONNX -> Relax), constant folding, conv layout, models by name
- ``plan``       a model's tasks, their status in a database, the untuned-kernel prior
- ``tuning/``    settings, allocation, runner and builder, the tuning session, confirmation,
                 logging, early-stop rules (``tuning/stop/``)
- ``storage/``   the schedule database and the per-task history (append-only JSON lines)
- ``codegen/``   compiling with the database applied, fallback schedules, intrinsics
- ``deploy/``    artifacts, end-to-end measurement, RPC
- ``pipeline``   plan -> tune -> compile -> artifact, what ``cosearch tune`` calls
- ``engine``     the calls a search loop makes, gathered in one namespace

Heavy imports (TVM, torch, ONNX) happen inside functions: listing targets never imports TVM.
"""
