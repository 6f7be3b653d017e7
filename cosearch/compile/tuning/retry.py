"""A runner whose failed measurements are measured again: a hung or rebooted RPC board's
candidate goes to another board instead of being recorded as a failed schedule.

A board that hangs is cut off by the RPC session timeout; one that reboots or drops off fails its
session at once. Either way the tracker does not hand that board to a new request until its server
registers again (a server re-registers only after its session ends), so the retry runs on another
board, or on the same one once it is back. A kernel that fails on every board costs one more
measurement than it would without retries; ``RetryingRunner`` counts both kinds.
"""

from __future__ import annotations

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.runner import PyRunner, PyRunnerFuture

#: times a candidate whose RPC measurement failed is measured again
RPC_RETRIES = 1
#: seconds past the session timeout after which a measuring process still inside a board's session
#: is ended by the kernel (``bounded_session``)
ALARM_GRACE_S = 3


def bounded_session(rpc_config):
    """MetaSchedule's session creation, bounded. Its session timeout is a Python timer in the
    measuring process, which never fires while the main thread waits inside TVM's native RPC code
    holding the GIL (measured: a stopped board hung a tuning call for good). So this also arms
    ``SIGALRM`` with its default action, which ends the process from the kernel, GIL or not, at the
    session timeout plus ``ALARM_GRACE_S``; the pool reports the candidate's measurement as failed
    (and starts a new process), and ``RetryingRunner`` measures it again. ``bounded_cleanup``
    disarms it. Runs in the runner's worker process (main thread)."""
    import math
    import signal

    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(int(math.ceil(rpc_config.session_timeout_sec or 60)) + ALARM_GRACE_S)
    return rpc_config.connect_server()


def bounded_cleanup(session, remote_path) -> None:
    """MetaSchedule's session clean-up, then the alarm of ``bounded_session`` disarmed."""
    import signal

    from tvm.s_tir.meta_schedule.runner.rpc_runner import default_cleanup

    try:
        default_cleanup(session, remote_path)
    finally:
        signal.alarm(0)


@derived_object
class RetryFuture(PyRunnerFuture):
    """One candidate's measurement, resubmitted to the owner's inner runner while it fails and
    retries are left."""

    def __init__(self, owner: "RetryingRunner", runner_input, future) -> None:
        super().__init__()
        self.owner, self.input, self.future, self.tries = owner, runner_input, future, 0

    def _settled(self):
        """The inner result if it is final; None after resubmitting a failed measurement."""
        res = self.future.result()
        if res.error_msg is None or self.tries >= self.owner.retries:
            if res.error_msg is not None:
                self.owner.failed += 1
            return res
        self.tries += 1
        self.owner.retried += 1
        lines = [ln.strip() for ln in str(res.error_msg).strip().splitlines() if ln.strip()]
        self.owner.errors.append(" | ".join(lines[:1] + lines[-1:])[:240])  # runner's line | the cause
        self.future = self.owner.inner.run([self.input])[0]
        return None

    def done(self) -> bool:
        while self.future.done():
            if self._settled() is not None:
                return True
        return False

    def result(self):
        while True:
            res = self._settled()
            if res is not None:
                return res


@derived_object
class RetryingRunner(PyRunner):
    """``inner``'s measurements, each failed one measured again up to ``retries`` times. Counts
    the retries (``retried``; each error's first and last line in ``errors``) and the measurements still
    failed after them (``failed``)."""

    def __init__(self, inner, *, retries: int = RPC_RETRIES) -> None:
        super().__init__()
        self.inner, self.retries = inner, retries
        self.retried, self.failed = 0, 0
        self.errors: list[str] = []

    def run(self, runner_inputs):
        futures = self.inner.run(runner_inputs)
        return [RetryFuture(self, inp, fut) for inp, fut in zip(runner_inputs, futures)]

    def counts(self) -> dict:
        """What the outcome of a tuning call reports: retries, failures after them, first errors."""
        return {"retried": self.retried, "failed": self.failed, "errors": self.errors[:3]}
