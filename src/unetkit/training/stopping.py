"""When to stop: steps, the time budget, or a signal; agreed by every process."""

from __future__ import annotations

import contextlib
import signal
import threading
import time

from . import distributed
from .context import Context, Loop
from .refit import held_out_minutes


class Stopper:
    """Decides, identically on every rank, whether to stop and how far the schedule is.

    Stops at `total_steps`, when the time budget (training time over all
    invocations) is spent, or on SIGINT/SIGTERM. The budget keeps room for
    the validation that ends every run, at the mean cost of those so far, so
    a 15-minute run ends in 15 minutes. Without a step count the schedule
    runs on the clock: progress = elapsed / that budget.
    """

    def __init__(self, ctx: Context, loop: Loop):
        self.ctx, self.begin, self.start_elapsed = ctx, time.perf_counter(), loop.elapsed
        minutes = held_out_minutes(ctx.run, ctx.config)  # with --refit the final model on every image gets the rest
        self.budget = minutes * 60 if minutes else None
        self.signalled = False
        self.interrupted = False  # SIGINT (Ctrl-C) among the signals: `train` re-raises it once the run is saved
        self.last = (0.0, 0.0)  # (stop, progress) agreed for the current step
        self._checked_step = -1

    def elapsed(self) -> float:
        return self.start_elapsed + time.perf_counter() - self.begin

    def _decide(self, loop: Loop) -> tuple[float, float]:
        if self._checked_step != loop.step:  # one agreement (one broadcast) per step
            elapsed, budget = self.elapsed(), self.training_budget(loop)
            over_time = budget is not None and elapsed >= budget
            done = loop.total_steps is not None and loop.step >= loop.total_steps
            progress = loop.step / loop.total_steps if loop.total_steps else elapsed / budget
            local = [float(over_time or done or self.signalled), progress]
            self.last = tuple(distributed.broadcast(local, self.ctx.world, self.ctx.device))
            self._checked_step = loop.step
        return self.last

    def training_budget(self, loop: Loop) -> float | None:
        """Seconds to train: the budget less one validation at its mean cost so far (none yet: nothing kept)."""
        if self.budget is None:
            return None
        costs = loop.validation_seconds
        return max(self.budget - sum(costs) / len(costs), 0.5 * self.budget) if costs else self.budget

    def stop(self, loop: Loop) -> bool:
        return bool(self._decide(loop)[0])

    def progress(self, loop: Loop) -> float:
        return self._decide(loop)[1]

    def reason(self, loop: Loop) -> str:
        if loop.total_steps is not None and loop.step >= loop.total_steps:
            return f"reached {loop.total_steps} steps"
        return "signal received" if self.signalled else "time budget spent"

    @contextlib.contextmanager
    def catching_signals(self):
        """SIGINT/SIGTERM finish the current step, then save and stop (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        def handler(signum, frame):  # noqa: ARG001
            self.signalled = True
            self.interrupted |= signum == signal.SIGINT

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
