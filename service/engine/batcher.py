"""Micro-batching across requests: a queue per loaded model version, one inference thread per device.

Requests put their latents on their model's queue as a `Job`; the `InferenceWorker` takes whatever is
waiting, up to `max_batch` latents (counted in latents, not requests), runs one forward and hands each
job its rows. Every forward of the service runs on that one thread: on the CPU one OpenMP team serves
every batch (more teams than cores make OpenMP stop spinning and every forward pay for waking its
threads), and on CUDA the graphs are captured and replayed by the thread that owns them.

- An idle worker never waits: a lone request runs the moment it arrives. Only right after a batch of
  several requests, when more are known to be arriving, does it wait (at most `max_wait` seconds) for
  the queue to fill a batch.
- A job larger than a batch is taken a batch at a time and put back at the end of its queue, so small
  interactive requests run between the chunks of a 256-image sweep instead of behind all of it (unless
  it is already past its deadline: then it is finished first); the queues of different models take
  turns the same way.
- Admission is by predicted wait (`admission`): a job the forwards ahead of it would finish later than
  `max_delay` seconds after it arrives is refused at once (`Overloaded`, a 503 for HTTP); one whose
  deadline passes while it waits is dropped the same way before it costs a forward. The latents waiting
  in all queues are also bounded by a shared `QueueBudget`, the memory cap.
- A cancelled job (its client went away) leaves the queue without costing a forward.
"""
from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, TypeVar

import torch

from service.engine.admission import (
    DEADLINE,
    PREDICTED_WAIT,
    QUEUE_FULL,
    ForwardCost,
    Overloaded,
    forwards_for_all,
    forwards_until_done,
)

T = TypeVar("T")


class QueueBudget:
    """How many latents may wait in all queues together (MAX_QUEUED_LATENTS)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def reserve(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def release(self, n: int) -> None:
        with self._lock:
            self.used -= n


@dataclass(frozen=True)
class BatchReport:
    """One forward, as the observer hears of it: once per batch, after its jobs have their rows."""

    model: str
    latents: int
    seconds: float
    runtime: str  # what the forward ran on
    precision: str
    waits: list[float]  # of the jobs whose first rows it ran: seconds each waited for its first forward
    finished: list[tuple[float, float]]  # of the jobs it finished: seconds from arrival to the last row,
    # as predicted at admission and as it happened


class BatchObserver(Protocol):
    def batch_ran(self, report: BatchReport) -> None: ...

    def job_shed(self, model: str, reason: str) -> None:
        """A job refused or dropped; `reason` is one of admission.REASONS."""


class Job:
    """One request's latents on their way through a batcher; `future` gets uint8 (n, C, H, W) images."""

    def __init__(self, latents: torch.Tensor, max_delay: float = math.inf, alone: bool = False) -> None:
        self.latents = latents
        self.n = latents.shape[0]
        self.alone = alone  # in forwards of its own: its pixels do not depend on what else was queued
        self.taken = 0  # rows handed to a batch so far
        self.done = 0  # rows computed so far
        self.images: torch.Tensor | None = None
        self.future: Future[torch.Tensor] = Future()
        self.cancelled = False
        self.enqueued_at = time.monotonic()
        self.deadline = self.enqueued_at + max_delay  # not started by then: dropped
        self.predicted_wait = 0.0  # seconds from arrival to the last row, as predicted at admission
        self.started_at: float | None = None  # when its first rows went into a forward
        self.finished_at: float | None = None  # when its last rows came out


class Task:
    """Long work done a step at a time on the inference thread (a projection): `steps` yields once per step and
    returns the result; the worker runs one step, then whatever batches wait, then the next step."""

    def __init__(self, steps: Iterator) -> None:
        self.steps = steps
        self.future: Future = Future()
        self.cancelled = False
        self.enqueued_at = time.monotonic()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.step_seconds: list[float] = []  # how long each step took: what a batch may wait behind


class InferenceWorker:
    """The one thread that runs every forward on a device, for every model's `Batcher`, and every `Task`'s steps."""

    def __init__(self, name: str = "inference") -> None:
        self.name = name
        self.cond = threading.Condition()  # guards the worker's and every batcher's queue
        self._ready: deque[Batcher] = deque()  # batchers with queued work, in turn
        self._calls: deque[tuple[Callable[[], object], Future]] = deque()
        self._tasks: deque[Task] = deque()  # in turn, a step each
        self._active: set[Task] = set()  # started and not ended: queued for a step, or in one
        self._task_turn = False  # after a batch, a task's step goes first; after a step, the batches
        self.step_cost: float | None = None  # a moving average of a task's step, in seconds
        self._thread: threading.Thread | None = None
        self.stopping = False
        self._running: tuple[Batcher, int, float] | None = None  # the forward in progress: whose, size, start

    def running_left(self, now: float) -> float:
        """Predicted seconds until the forward in progress ends (0 when none runs). Caller holds `cond`."""
        if self._running is None:
            return 0.0
        batcher, n, started = self._running
        return max(0.0, started + batcher.cost.predict(n) - now)

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the inference thread (model warm-up, CUDA graph capture) and return its result."""
        future: Future = Future()
        with self.cond:
            self._calls.append((fn, future))
            self._wake()
        return future.result()

    def start_task(self, steps: Iterator) -> Task:
        """Run `steps` a step at a time between batches; the task's future gets what it returns."""
        task = Task(steps)
        with self.cond:
            self._tasks.append(task)
            self._active.add(task)
            self._wake()
        return task

    def cancel_task(self, task: Task) -> None:
        """Stop a task between steps (its client went away); a step already running finishes."""
        with self.cond:
            task.cancelled = True
            if task in self._tasks:
                self._tasks.remove(task)
            self._active.discard(task)
        task.future.cancel()

    @property
    def tasks(self) -> int:
        """Tasks in progress (caller holds the lock)."""
        return len(self._active)

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
            self._thread = None

    def resume(self) -> None:
        """Accept work again after `stop` (an ASGI server may run an app's lifespan more than once)."""
        with self.cond:
            self.stopping = False

    def _wake(self) -> None:
        """Called with the lock held, when there is new work."""
        if self.stopping:
            raise RuntimeError("the inference worker has stopped: the service is shutting down")
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
            self._thread.start()
        self.cond.notify()

    def _step(self, task: Task) -> None:
        """One step of `task` (the lock released); back in the queue unless it ended."""
        started = time.monotonic()
        task.started_at = task.started_at or started
        try:
            next(task.steps)
        except StopIteration as end:
            self._end(task)
            _settle(task.future, result=end.value)
            return
        except BaseException as e:  # the task's caller gets it; the worker goes on
            self._end(task)
            _settle(task.future, exception=e)
            return
        finally:
            seconds = time.monotonic() - started
            task.step_seconds.append(seconds)
            self.step_cost = seconds if self.step_cost is None else 0.9 * self.step_cost + 0.1 * seconds
        with self.cond:
            if not task.cancelled:
                self._tasks.append(task)

    def _end(self, task: Task) -> None:
        task.finished_at = time.monotonic()
        with self.cond:
            self._active.discard(task)

    def task_steps_left(self) -> float:
        """Predicted seconds a forward waits for a task's step taken between batches (0 with no task). Caller
        holds the lock."""
        return (self.step_cost or 0.0) if self._tasks else 0.0

    def _ready_to_run(self, batcher: Batcher) -> None:
        """Called with the lock held by a batcher that has just queued work."""
        if batcher not in self._ready:
            self._ready.append(batcher)
        if batcher.filling and batcher.queued < batcher.max_batch:
            return  # it wakes when the batch is full or its wait ends: not for every request that joins it
        self._wake()

    def _work(self) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self._calls or self._ready or self._tasks or self.stopping)
                if self.stopping:
                    return
                task = None
                if self._tasks and (self._task_turn or not self._ready) and not self._calls:
                    task = self._tasks.popleft()
                    self._task_turn = False
                if task is not None:
                    call, batch = None, None
                elif self._calls:
                    call, batch = self._calls.popleft(), None
                else:
                    batcher = self._ready.popleft()
                    batcher.wait_to_fill()
                    batch = batcher.take()
                    if batcher.queued:
                        self._ready.append(batcher)  # the other models' queues go first
                    if batch:
                        self._running = (batcher, sum(end - first for _, first, end in batch), time.monotonic())
                        self._task_turn = True
            if task is not None:
                self._step(task)
            elif batch is None:
                fn, future = call
                try:
                    _settle(future, result=fn())
                except BaseException as e:  # the caller gets it; the worker goes on
                    _settle(future, exception=e)
            elif batch:
                batcher.run(batch)
                with self.cond:
                    self._running = None


class Batcher:
    """The queue of one loaded model version; its batches run on the shared `InferenceWorker`."""

    def __init__(self, name: str, forward: Callable[[torch.Tensor], torch.Tensor], worker: InferenceWorker,
                 max_batch: int, max_wait: float, budget: QueueBudget, observer: BatchObserver,
                 max_delay: float = math.inf, runs_on: Callable[[int], tuple[str, str]] = lambda n: ("", "")) -> None:
        self.name = name
        self.forward = forward  # (n, latent_dim) latents -> uint8 (n, C, H, W) images, on the worker's thread
        self.runs_on = runs_on  # a batch size -> the (runtime, precision) its forward runs on, for the observer
        self.worker = worker
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_delay = max_delay  # seconds from arrival to the last row that admission allows
        self.budget = budget
        self.cost = ForwardCost(max_batch)  # what this version's forwards take on this device
        self._observer = observer
        self._queue: deque[Job] = deque()
        self.queued = 0  # latents waiting in this queue
        self._last_batch_end = float("-inf")
        self._last_batch_jobs = 0
        self.filling = False  # the worker waits for a batch from this queue (wait_to_fill): wake it only when full

    # ------------------------------------------------------------------ requests' side
    def submit(self, latents: torch.Tensor, alone: bool = False) -> Job:
        """Queue `latents` (n, latent_dim) float32 on the CPU; `alone`: never in a forward with other jobs' rows (a
        batch's size can change a pixel by a grey level, and some answers must not depend on the load). Raises
        Overloaded when the job is predicted to finish later than `max_delay` after now, or the queues hold
        MAX_QUEUED_LATENTS already."""
        job = Job(latents, self.max_delay, alone)
        with self.worker.cond:
            if self.worker.stopping:
                raise RuntimeError("the inference worker has stopped: the service is shutting down")
            wait = self.predict_wait(job.n, job.enqueued_at)
            refused = self._refusal(wait)
            if refused is None and not self.budget.reserve(job.n):
                refused = Overloaded(f"the service is at capacity ({self.budget.limit} latents queued, "
                                     "MAX_QUEUED_LATENTS); retry shortly", wait, QUEUE_FULL)
            if refused is None:
                job.predicted_wait = wait
                self._queue.append(job)
                self.queued += job.n
                self.worker._ready_to_run(self)
                return job
        self._observer.job_shed(self.name, refused.reason)
        raise refused

    def admit(self, n: int) -> None:
        """Raise Overloaded now if a job of `n` latents would be refused for its predicted wait: a caller can ask
        before it spends anything on the request (drawing its latents, say)."""
        with self.worker.cond:
            refused = self._refusal(self.predict_wait(n, time.monotonic()))
        if refused is not None:
            self._observer.job_shed(self.name, refused.reason)
            raise refused

    def _refusal(self, wait: float) -> Overloaded | None:
        """The refusal a job predicted to be done in `wait` seconds gets, if any."""
        if wait <= self.max_delay:
            return None
        return Overloaded(f"the service is busy: this request would be done in {wait:.2f}s, later than "
                          f"MAX_QUEUE_DELAY_MS ({self.max_delay * 1000:.0f} ms) allows", wait, PREDICTED_WAIT)

    def predict_wait(self, n: int, now: float) -> float:
        """Seconds until a job of `n` latents queued now would be done: the forward in progress, then the
        forwards the scheduler runs before this job's last rows (its queue's chunks, and the other models'
        queues taking turns with it). Caller holds the worker's lock."""
        late = frozenset(i for i, job in enumerate(self._queue) if job.taken and now > job.deadline)
        mine = forwards_until_done([job.n - job.taken for job in self._queue] + [n], self.max_batch, late)
        wait = self.cost.seconds(mine) + self.worker.running_left(now)
        forwards = len(mine)
        ready = list(self.worker._ready)
        position = ready.index(self) if self in ready else len(ready)
        for i, other in enumerate(ready):
            if other is not self:  # a turn per forward of ours; those ahead of us in the turn order go first
                theirs = forwards_for_all(other.queued, other.max_batch)[:len(mine) if i < position else len(mine) - 1]
                wait += other.cost.seconds(theirs)
                forwards += len(theirs)
        return wait + forwards * self.worker.task_steps_left()  # a projection's step may come before each

    def cancel(self, job: Job) -> None:
        """Drop what of `job` has not run yet (its client went away); a forward already running finishes."""
        self._drop(job)
        job.future.cancel()

    def _drop(self, job: Job) -> None:
        with self.worker.cond:
            if job.cancelled:
                return
            job.cancelled = True
            remaining = job.n - job.taken
            job.taken = job.n
            if remaining and job in self._queue:
                self._queue.remove(job)
                self.queued -= remaining
                self.budget.release(remaining)

    # ------------------------------------------------------------------ the worker's side (its lock held)
    def wait_to_fill(self) -> None:
        """If a batch of several requests has just finished, wait up to max_wait for the queue to fill one:
        more are arriving. One client sending one request after another never waits."""
        if self._last_batch_jobs > 1:
            deadline = self._last_batch_end + self.max_wait
            self.filling = True
            while self.queued < self.max_batch and (left := deadline - time.monotonic()) > 0:
                self.worker.cond.wait(left)
            self.filling = False

    def take(self) -> list[tuple[Job, int, int]]:
        """Up to max_batch latents from the front of the queue, as (job, first row, end row). A job with
        rows left over goes to the back of the queue; one whose deadline passed before it started is
        dropped with Overloaded."""
        batch, room, now = [], self.max_batch, time.monotonic()
        while self._queue and room > 0:
            if batch and (self._queue[0].alone or batch[0][0].alone):
                break  # a job that runs alone shares no forward, in either direction
            job = self._queue.popleft()
            if job.taken == 0 and now > job.deadline:
                self._expire(job, now)
                continue
            take = min(job.n - job.taken, room)
            batch.append((job, job.taken, job.taken + take))
            job.taken += take
            room -= take
            if job.taken < job.n:  # the rest waits its turn behind the others; once late, it goes first
                (self._queue.appendleft if now > job.deadline else self._queue.append)(job)
        taken = self.max_batch - room
        self.queued -= taken
        self.budget.release(taken)
        return batch

    def _expire(self, job: Job, now: float) -> None:
        """Drop a job (already off the queue) that waited past its deadline; retry when the queue has drained."""
        job.cancelled, job.taken = True, job.n
        self.queued -= job.n
        self.budget.release(job.n)
        drain = self.worker.running_left(now) + self.cost.seconds(forwards_for_all(self.queued, self.max_batch))
        _settle(job.future, exception=Overloaded(
            f"the service is busy: this request waited {now - job.enqueued_at:.2f}s without starting, past "
            f"MAX_QUEUE_DELAY_MS ({self.max_delay * 1000:.0f} ms)", drain, DEADLINE))
        self._observer.job_shed(self.name, DEADLINE)

    # ------------------------------------------------------------------ the worker's side (lock released)
    def run(self, batch: list[tuple[Job, int, int]]) -> None:
        """One forward for the whole batch, then each job its rows, then one report to the observer."""
        started = time.monotonic()
        self._last_batch_jobs = len(batch)
        waits = []
        for job, first, _ in batch:
            if first == 0:
                job.started_at = started
                waits.append(started - job.enqueued_at)
        latents = torch.cat([job.latents[first:end] for job, first, end in batch])
        n = latents.shape[0]
        runtime, precision = self.runs_on(n)
        try:
            images = self.forward(latents)
        except Exception as e:  # one bad batch fails its requests, never the worker
            for job, _, _ in batch:
                self._drop(job)
                _settle(job.future, exception=e)
            return
        finally:
            self._last_batch_end = time.monotonic()
        seconds = self._last_batch_end - started
        done = []
        offset = 0
        for job, first, end in batch:
            rows = images[offset:offset + end - first]
            offset += end - first
            if job.cancelled:
                continue
            if job.images is None:
                job.images = torch.empty((job.n, *images.shape[1:]), dtype=images.dtype)
            job.images[first:end].copy_(rows)  # a copy: the forward may reuse its output buffer
            job.done += end - first
            if job.done == job.n:
                job.finished_at = self._last_batch_end
                done.append(job)
        finished = [(job.predicted_wait, job.finished_at - job.enqueued_at) for job in done]
        self.cost.observe(n, seconds)
        # reported before the answers go out, so that metrics read after an answer count its batch
        self._observer.batch_ran(BatchReport(self.name, n, seconds, runtime, precision, waits, finished))
        for job in done:
            _settle(job.future, result=job.images)


def _settle(future: Future, result=None, exception: BaseException | None = None) -> None:
    """Complete `future` unless its request was cancelled meanwhile (from another thread)."""
    with contextlib.suppress(InvalidStateError):
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
