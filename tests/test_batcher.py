"""The micro-batcher against a fake forward whose images spell out which latent made them."""
import threading
import time

import pytest
import torch

from service.engine.batcher import Batcher, InferenceWorker, Overloaded, QueueBudget

pytestmark = pytest.mark.fast  # make check runs it on every commit


class Recorder:
    """Observer and forward in one: records every batch; `hold()` makes the next forwards wait."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.shed = 0
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        ids = latents[:, 0].long()
        self.batches.append(ids.tolist())
        self.entered.set()
        assert self.gate.wait(10)
        return torch.stack([ids % 256, ids // 256], 1).to(torch.uint8).view(-1, 1, 1, 2)  # (n, C, H, W)

    def hold(self) -> None:
        self.gate.clear()
        self.entered.clear()

    def batch_ran(self, report): pass

    def job_shed(self, model, reason):
        self.shed += 1


def latents(first: int, n: int) -> torch.Tensor:
    z = torch.zeros(n, 4)
    z[:, 0] = torch.arange(first, first + n)
    return z


def ids_of(images: torch.Tensor) -> list[int]:
    flat = images.view(-1, 2).long()
    return (flat[:, 0] + 256 * flat[:, 1]).tolist()


def occupy(batcher: Batcher, rec: Recorder, n: int = 1):
    """A job whose forward has started and is held until `rec.gate` opens: the queue fills behind it."""
    rec.hold()
    job = batcher.submit(latents(0, n))
    assert rec.entered.wait(5)
    return job


def make(max_batch=8, max_wait=0.002, budget=1000):
    rec = Recorder()
    return Batcher("m", rec.forward, InferenceWorker(), max_batch, max_wait, QueueBudget(budget), rec), rec


def test_concurrent_requests_of_mixed_sizes_each_get_their_own_rows():
    batcher, rec = make(max_batch=16)
    sizes = [1, 3, 16, 7, 1, 40, 2, 5] * 4
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    results = {}

    def client(i):
        results[i] = ids_of(batcher.submit(latents(starts[i], sizes[i])).future.result(10))

    blocker = occupy(batcher, rec, 1)  # the others queue up behind it, from many threads at once
    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(sizes))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while batcher.queued < sum(sizes) and time.monotonic() < deadline:
        time.sleep(0.01)
    rec.gate.set()
    for t in threads:
        t.join()
    blocker.future.result(5)
    for i, n in enumerate(sizes):
        assert results[i] == list(range(starts[i], starts[i] + n))
    ran = rec.batches[1:]
    assert max(len(b) for b in ran) <= 16
    assert len(ran) == -(-sum(sizes) // 16)  # queued together, they ran in the fewest forwards possible
    assert sorted(x for b in ran for x in b) == list(range(sum(sizes)))  # every row computed once


def test_a_lone_request_on_an_idle_batcher_does_not_wait_for_a_batch():
    batcher, rec = make(max_wait=0.5)
    for i in range(3):
        job = batcher.submit(latents(i, 1))
        assert ids_of(job.future.result(5)) == [i]
        assert job.started_at - job.enqueued_at < 0.1  # far below the 0.5 s a busy batcher may wait
        time.sleep(0.6)  # idle again


def after_a_batch_of_two(batcher: Batcher, rec: Recorder) -> None:
    """Run [0] alone, then [1, 2] together: the batcher is busy, so it now waits up to max_wait to fill the next."""
    blocker = occupy(batcher, rec)
    pair = [batcher.submit(latents(1, 1)), batcher.submit(latents(2, 1))]
    rec.gate.set()
    for job in [blocker, *pair]:
        job.future.result(5)


def test_a_busy_batcher_waits_briefly_to_fill_a_batch():
    batcher, rec = make(max_batch=8, max_wait=0.3)
    after_a_batch_of_two(batcher, rec)
    # right after a batch of two requests: those arriving within max_wait share one forward
    jobs = [batcher.submit(latents(3 + i, 1)) for i in range(3)]
    for job in jobs:
        job.future.result(5)
    assert rec.batches == [[0], [1, 2], [3, 4, 5]]


def test_a_filling_batch_wakes_the_inference_thread_when_full_not_for_every_request():
    """Each wake of the inference thread costs both threads a switch; under load one came with every request."""
    batcher, rec = make(max_batch=4, max_wait=5.0)
    after_a_batch_of_two(batcher, rec)
    jobs = [batcher.submit(latents(3, 1))]  # the worker now waits up to 5 s for more
    deadline = time.monotonic() + 5
    while not batcher.filling and time.monotonic() < deadline:
        time.sleep(0.001)
    wakes, notify = [], batcher.worker.cond.notify
    batcher.worker.cond.notify = lambda n=1: (wakes.append(n), notify(n))
    jobs += [batcher.submit(latents(4 + i, 1)) for i in range(2)]
    assert wakes == []  # joined, not woken
    jobs.append(batcher.submit(latents(6, 1)))  # the fourth fills the batch
    for job in jobs:
        job.future.result(5)
    assert len(wakes) == 1 and rec.batches[-1] == [3, 4, 5, 6]
    assert jobs[-1].finished_at - jobs[0].enqueued_at < 2  # woken when full, not at the end of its 5 s


def test_one_client_sending_one_request_after_another_never_waits():
    batcher, rec = make(max_wait=0.5)
    for i in range(3):
        job = batcher.submit(latents(i, 1))
        job.future.result(5)
        assert job.started_at - job.enqueued_at < 0.1


def test_a_request_larger_than_a_batch_is_split_and_reassembled():
    batcher, rec = make(max_batch=4)
    job = batcher.submit(latents(100, 10))
    assert ids_of(job.future.result(5)) == list(range(100, 110))
    assert [len(b) for b in rec.batches] == [4, 4, 2]


def test_small_requests_run_between_the_chunks_of_a_big_one():
    batcher, rec = make(max_batch=4)
    blocker = occupy(batcher, rec)
    big = batcher.submit(latents(100, 12))
    small = batcher.submit(latents(200, 1))
    rec.gate.set()
    big.future.result(5), small.future.result(5), blocker.future.result(5)
    assert rec.batches[1] == [100, 101, 102, 103]
    assert rec.batches[2][0] == 200  # after one chunk of the big request, not after all three


def test_a_full_queue_refuses_at_once_and_serves_again_when_drained():
    batcher, rec = make(max_batch=4, budget=8)
    running = occupy(batcher, rec, 4)  # taken into a forward: no longer counts as queued
    queued = [batcher.submit(latents(10, 4)), batcher.submit(latents(20, 4))]
    started = time.monotonic()
    with pytest.raises(Overloaded) as refused:
        batcher.submit(latents(30, 1))
    assert time.monotonic() - started < 0.1 and refused.value.retry_after >= 1 and rec.shed == 1
    rec.gate.set()
    for job in [running, *queued]:
        job.future.result(5)
    assert ids_of(batcher.submit(latents(40, 2)).future.result(5)) == [40, 41]


def test_a_cancelled_request_costs_no_forward():
    batcher, rec = make(max_batch=4, budget=100)
    running = occupy(batcher, rec)
    gone = batcher.submit(latents(50, 3))
    kept = batcher.submit(latents(60, 2))
    batcher.cancel(gone)
    rec.gate.set()
    assert ids_of(kept.future.result(5)) == [60, 61] and running.future.result(5) is not None
    assert all(x < 50 or x >= 60 for b in rec.batches for x in b)  # the cancelled rows never ran
    assert gone.future.cancelled() and batcher.budget.used == 0


def test_a_failing_forward_fails_its_requests_and_the_batcher_keeps_serving():
    batcher, rec = make()
    real = batcher.forward
    batcher.forward = lambda z: (_ for _ in ()).throw(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        batcher.submit(latents(0, 2)).future.result(5)
    batcher.forward = real
    assert ids_of(batcher.submit(latents(5, 2)).future.result(5)) == [5, 6]


def test_models_share_one_inference_thread_and_take_turns():
    worker, rec = InferenceWorker(), Recorder()
    threads = []
    a = Batcher("a", lambda z: threads.append(threading.current_thread()) or rec.forward(z), worker, 4, 0.0,
                QueueBudget(100), rec)
    b = Batcher("b", lambda z: threads.append(threading.current_thread()) or rec.forward(z), worker, 4, 0.0,
                QueueBudget(100), rec)
    blocker = occupy(a, rec)
    big = a.submit(latents(100, 8))
    small = b.submit(latents(200, 1))
    rec.gate.set()
    for job in (blocker, big, small):
        job.future.result(5)
    assert rec.batches[1:] == [[100, 101, 102, 103], [200], [104, 105, 106, 107]]  # b's turn between a's chunks
    assert len(set(threads)) == 1 and threads[0] is not threading.current_thread()
    assert worker.call(threading.current_thread) is threads[0]  # warm-ups and captures run there too


def test_a_stopped_worker_refuses_new_work():
    batcher, rec = make()
    batcher.submit(latents(0, 1)).future.result(5)
    batcher.worker.stop()
    with pytest.raises(RuntimeError, match="shutting down"):
        batcher.submit(latents(1, 1))
