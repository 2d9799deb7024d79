"""Admission by predicted wait: the cost estimate, the replay of the scheduler, refusals at the bound and
deadline drops, against forwards whose cost is known (they sleep a set time per latent)."""
import math
import random
import threading
import time

import pytest
import torch

from service.engine.admission import (
    DEADLINE,
    PREDICTED_WAIT,
    QUEUE_FULL,
    ForwardCost,
    Overloaded,
    forwards_until_done,
    retry_after_header,
)
from service.engine.batcher import Batcher, InferenceWorker, QueueBudget

pytestmark = pytest.mark.fast  # make check runs it on every commit


class Clocked:
    """A forward that sleeps `per_latent` seconds a latent (plus `fixed`), optionally held at a gate, and an
    observer that records what admission and the batches did."""

    def __init__(self, per_latent: float = 0.0, fixed: float = 0.0) -> None:
        self.per_latent, self.fixed = per_latent, fixed
        self.batches: list[list[int]] = []
        self.shed: list[str] = []
        self.finished: list[tuple[float, float]] = []
        self.gate, self.entered = threading.Event(), threading.Event()
        self.gate.set()

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        self.batches.append(latents[:, 0].long().tolist())
        self.entered.set()
        assert self.gate.wait(10)
        time.sleep(self.fixed + self.per_latent * latents.shape[0])
        return torch.zeros(latents.shape[0], 1, 1, 1, dtype=torch.uint8)

    def hold(self) -> None:
        """The next forward waits at the gate until it is set."""
        self.gate.clear()
        self.entered.clear()

    def batch_ran(self, report):
        self.finished += report.finished

    def job_shed(self, model, reason):
        self.shed.append(reason)


def ids(first: int, n: int) -> torch.Tensor:
    z = torch.zeros(n, 4)
    z[:, 0] = torch.arange(first, first + n)
    return z


def make(clock: Clocked, max_batch=4, max_delay=math.inf, budget=10_000, worker=None, name="m") -> Batcher:
    return Batcher(name, clock.forward, worker or InferenceWorker(), max_batch, 0.0, QueueBudget(budget), clock,
                   max_delay=max_delay)


def learn(batcher: Batcher, sizes=(1, 2, 3, 4)) -> None:
    """Run a few forwards of each size alone, so the cost estimate has seen the batcher's real forwards."""
    for _ in range(3):
        for n in sizes:
            batcher.submit(ids(0, n)).future.result(5)


# ---------------------------------------------------------------------- the cost estimate
def test_the_cost_estimate_interpolates_between_what_it_has_seen():
    cost = ForwardCost(max_batch=64)
    assert cost.predict(8) == 0 and not cost.known  # nothing to go by yet
    cost.observe(4, 0.004)
    cost.observe(32, 0.020)
    assert cost.predict(4) == pytest.approx(0.004)
    assert cost.predict(18) == pytest.approx(0.012)  # between the two points, on the line through them
    assert cost.predict(64) == pytest.approx(0.040)  # above the largest: in proportion
    assert cost.predict(1) == pytest.approx(0.004)  # below the smallest: at least its time


def test_the_cost_estimate_follows_a_change_of_speed():
    cost = ForwardCost(max_batch=8, weight=0.2)
    for _ in range(10):
        cost.observe(8, 0.010)
    for _ in range(30):
        cost.observe(8, 0.030)  # the machine got three times slower
    assert cost.predict(8) == pytest.approx(0.030, rel=0.01)


def test_retry_after_is_whole_seconds_rounded_up():
    assert [retry_after_header(s) for s in (0.0, 0.2, 1.0, 1.01, 2.5)] == [1, 1, 1, 2, 3]


# ---------------------------------------------------------------------- the replay of the scheduler
def test_the_replay_finishes_a_small_job_after_one_chunk_of_a_big_one():
    # [300 latents, 1 latent], batches of 256: the big job's first 256, then the small one with its other 44
    assert forwards_until_done([300, 1], 256) == [256, 45]
    assert forwards_until_done([1], 256) == [1]
    assert forwards_until_done([3, 3, 3], 4) == [4, 4]  # the last 3 and the middle one's other 1


@pytest.mark.parametrize("seed", range(8))
def test_the_replay_matches_the_batcher_itself(seed):
    """Random queues through a real Batcher: the last job finishes in the forward the replay predicts, with
    the forwards ahead of the sizes it predicts. (Jobs queued after a job can only add to its wait: they
    fill its last forward, and a split job's remainder goes behind them.)"""
    rng = random.Random(seed)
    clock = Clocked()
    batcher = make(clock, max_batch=rng.choice([3, 4, 8]))
    clock.hold()
    blocker = batcher.submit(ids(10_000, 1))
    assert clock.entered.wait(5)
    sizes = [rng.choice([1, 1, 2, 3, 5, 9, 17]) for _ in range(rng.randint(1, 12))]
    with batcher.worker.cond:
        predicted, jobs = [], []
        for i, n in enumerate(sizes):
            predicted.append(forwards_until_done([j.n - j.taken for j in batcher._queue] + [n], batcher.max_batch))
            jobs.append(batcher.submit(ids(1000 * (i + 1), n)))
    clock.gate.set()
    for job in [blocker, *jobs]:
        job.future.result(5)
    ran = clock.batches[1:]  # after the blocker
    for i, job in enumerate(jobs):
        last = max(k for k, batch in enumerate(ran) if any(x // 1000 == i + 1 for x in batch))
        if i == len(jobs) - 1:
            assert [len(b) for b in ran[:last + 1]] == predicted[i], sizes
        else:
            assert last + 1 >= len(predicted[i]), (sizes, i)


# ---------------------------------------------------------------------- admission against a known cost
def test_predicted_waits_follow_a_known_cost_and_refusals_come_at_the_bound():
    clock = Clocked(per_latent=0.010)  # a full batch of 4: 40 ms
    batcher = make(clock, max_batch=4, max_delay=0.25)
    learn(batcher)
    clock.finished.clear()
    accepted, refused = [], None
    for i in range(12):  # all queued at once, behind each other: 4 latents each, one forward each
        try:
            accepted.append(batcher.submit(ids(100 * i, 4)))
        except Overloaded as e:
            refused = e
            break
    predictions = [job.predicted_wait for job in accepted]
    assert refused is not None and refused.reason == PREDICTED_WAIT and clock.shed == [PREDICTED_WAIT]
    # the last accepted job was predicted within the bound, the refused one past it: refused at the bound
    assert predictions[-1] <= 0.25 and len(accepted) >= 5
    assert refused.wait > 0.25 and refused.retry_after == math.ceil(refused.wait)  # the predicted wait, rounded up
    for job in accepted:
        job.future.result(5)
    for job in accepted:
        actual = job.finished_at - job.enqueued_at
        assert actual == pytest.approx(job.predicted_wait, rel=0.3, abs=0.015), (predictions, actual)
    assert len(clock.finished) == len(accepted) and all(p > 0 for p, _ in clock.finished)  # both, for the metrics


def test_the_refused_request_would_indeed_have_finished_past_the_bound():
    clock = Clocked(per_latent=0.010)
    batcher = make(clock, max_batch=4, max_delay=0.15)
    learn(batcher)
    jobs = []
    while True:
        try:
            jobs.append(batcher.submit(ids(0, 4)))
        except Overloaded:
            break
    # had it been queued, the refused job would have run in the forward after the last accepted one
    jobs[-1].future.result(5)
    finished_last = jobs[-1].finished_at - jobs[0].enqueued_at
    assert finished_last <= 0.15 + 0.03  # the accepted ones were in time
    assert finished_last + 0.040 > 0.15  # one more full batch would not have been


def test_a_slider_request_behind_a_big_sweep_is_admitted_by_its_real_wait():
    clock = Clocked(per_latent=0.005)  # a full batch of 4: 20 ms
    batcher = make(clock, max_batch=4, max_delay=0.3)
    learn(batcher)
    clock.hold()
    running = batcher.submit(ids(0, 4))
    assert clock.entered.wait(5)
    sweep = batcher.submit(ids(500, 40))  # ten forwards
    slider = batcher.submit(ids(900, 1))  # one image behind it: it waits for one chunk of the sweep, not ten
    full = batcher.cost.predict(4)
    assert sweep.predicted_wait == pytest.approx(11 * full, rel=0.2)
    assert slider.predicted_wait == pytest.approx(3 * full, rel=0.2)
    clock.gate.set()
    for job in (running, sweep, slider):
        job.future.result(5)
    assert slider.finished_at < sweep.finished_at
    assert slider.finished_at - slider.enqueued_at == pytest.approx(slider.predicted_wait, rel=0.3, abs=0.015)


def test_a_split_job_past_its_deadline_is_finished_before_newer_work():
    clock = Clocked()
    batcher = make(clock, max_batch=4, max_delay=0.2)
    learn(batcher)
    clock.hold()
    sweep = batcher.submit(ids(100, 12))  # three chunks; its first is taken at once and held past its deadline
    assert clock.entered.wait(5)
    time.sleep(0.25)
    small = [batcher.submit(ids(200 + i, 1)) for i in range(4)]
    with batcher.worker.cond:  # the replay knows the late sweep goes first
        predicted = forwards_until_done([j.n - j.taken for j in batcher._queue] + [1], 4, frozenset({0}))
    assert predicted == [4, 4, 4, 1]  # the sweep's other two chunks, the four small ones, then this one
    clock.gate.set()
    for job in [sweep, *small]:
        job.future.result(5)
    assert clock.batches[-3:-1] == [[104, 105, 106, 107], [108, 109, 110, 111]]  # the sweep's rest came first
    assert sweep.finished_at < min(job.finished_at for job in small)


def test_a_queued_job_whose_deadline_passes_is_dropped_before_its_forward():
    clock = Clocked()
    batcher = make(clock, max_batch=4, max_delay=0.2)
    learn(batcher)
    clock.hold()
    held = batcher.submit(ids(0, 1))
    assert clock.entered.wait(5)
    late = batcher.submit(ids(50, 3))  # admitted: the forward ahead was predicted to be quick
    time.sleep(0.3)  # ... but it is held past the late job's deadline
    clock.gate.set()
    held.future.result(5)
    with pytest.raises(Overloaded) as dropped:
        late.future.result(5)
    assert dropped.value.reason == DEADLINE and dropped.value.retry_after >= 1
    assert all(x < 50 for batch in clock.batches for x in batch)  # its rows never reached a forward
    assert batcher.budget.used == 0 and clock.shed == [DEADLINE]
    assert batcher.submit(ids(60, 2)).future.result(5) is not None  # and the batcher goes on


def test_the_memory_cap_still_refuses_with_its_own_reason():
    clock = Clocked()
    batcher = make(clock, max_batch=4, budget=6)
    clock.hold()
    held = batcher.submit(ids(0, 4))
    assert clock.entered.wait(5)
    queued = batcher.submit(ids(10, 4))
    with pytest.raises(Overloaded) as full:
        batcher.submit(ids(20, 4))
    assert full.value.reason == QUEUE_FULL and "MAX_QUEUED_LATENTS" in str(full.value)
    clock.gate.set()
    held.future.result(5), queued.future.result(5)


def test_other_models_taking_turns_count_in_the_prediction():
    clock = Clocked(per_latent=0.005)
    worker = InferenceWorker()
    a, b = make(clock, worker=worker, name="a"), make(clock, worker=worker, name="b")
    learn(a), learn(b)
    clock.hold()
    held = a.submit(ids(0, 4))
    assert clock.entered.wait(5)
    a_jobs = [a.submit(ids(100, 4)) for _ in range(3)]  # three forwards of a
    b_job = b.submit(ids(200, 4))  # b's one forward comes after a's first: 2 forwards plus the held one ahead
    # the held forward (just started), a's first forward (a is ahead in the turn order), then b's own
    assert b_job.predicted_wait == pytest.approx(3 * b.cost.predict(4), rel=0.2)
    clock.gate.set()
    for job in [held, *a_jobs, b_job]:
        job.future.result(5)
    assert b_job.finished_at < a_jobs[1].finished_at  # it really ran between a's chunks of work


def test_admission_can_be_asked_before_the_request_costs_anything():
    clock = Clocked(per_latent=0.010)
    batcher = make(clock, max_batch=4, max_delay=0.15)
    learn(batcher)
    clock.hold()
    held = batcher.submit(ids(0, 4))
    assert clock.entered.wait(5)
    batcher.admit(4)  # the held forward and its own: 80 ms, within the bound; and nothing was queued
    assert batcher.queued == 0
    queued = [batcher.submit(ids(10, 4)), batcher.submit(ids(20, 4))]  # 80 and 120 ms
    with pytest.raises(Overloaded) as refused:
        batcher.admit(4)  # 160 ms
    assert refused.value.reason == PREDICTED_WAIT and clock.shed == [PREDICTED_WAIT] and batcher.queued == 8
    clock.gate.set()
    for job in [held, *queued]:
        job.future.result(5)
