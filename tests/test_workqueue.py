"""The controller's work queue and per-node backoff, with a fake clock: no threads sleep here."""

import threading

from dhc.controller.cache import JobStore, Store
from dhc.controller.jobs import NODE_ANNOTATION
from dhc.controller.workqueue import Backoff, Queue


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def drain(queue):
    names = []
    while (name := queue.get(timeout_s=0)) is not None:
        names.append(name)
        queue.done(name)
    return names


def test_a_name_added_many_times_while_waiting_is_handed_out_once_in_order():
    queue = Queue(Clock())
    for name in ["a", "b", "a", "c", "b", "a"]:
        queue.add(name)
    assert len(queue) == 3
    assert drain(queue) == ["a", "b", "c"]
    assert queue.get(timeout_s=0) is None


def test_a_name_added_while_processed_is_handed_out_again_only_after_done():
    queue = Queue(Clock())
    queue.add("a")
    assert queue.get(timeout_s=0) == "a"
    for _ in range(100):
        queue.add("a")
    assert queue.get(timeout_s=0) is None  # never to a second worker while the first has it
    queue.done("a")
    assert queue.get(timeout_s=0) == "a"  # once more, for the adds made meanwhile
    queue.done("a")
    assert queue.get(timeout_s=0) is None


def test_delayed_adds_come_due_by_the_clock_and_the_earliest_wins():
    clock = Clock()
    queue = Queue(clock)
    queue.add_after("a", 10)
    queue.add_after("b", 5)
    queue.add_after("a", 3)  # earlier: replaces the later one
    queue.add_after("a", 30)  # later: ignored
    assert queue.delayed() == {"a": 1003.0, "b": 1005.0}
    assert queue.get(timeout_s=0) is None
    clock.now = 1003.0
    assert drain(queue) == ["a"]
    clock.now = 1100.0
    assert drain(queue) == ["b"]  # the stale entries of "a" are skipped
    assert queue.delayed() == {}


def test_a_delay_of_zero_adds_at_once_and_close_wakes_a_waiting_worker():
    queue = Queue(Clock())
    queue.add_after("a", 0)
    assert drain(queue) == ["a"]
    got = []
    worker = threading.Thread(target=lambda: got.append(queue.get()))
    worker.start()
    queue.close()
    worker.join(timeout=5)
    assert got == [None] and not worker.is_alive()


def test_a_waiting_worker_is_woken_by_an_add():
    queue = Queue()
    got = []
    worker = threading.Thread(target=lambda: got.append(queue.get(timeout_s=30)))
    worker.start()
    queue.add("a")
    worker.join(timeout=5)
    assert got == ["a"]


def test_backoff_doubles_from_the_base_to_the_cap_with_jitter_and_resets():
    low, high = Backoff(1.0, 300.0, jitter=lambda: 0.0), Backoff(1.0, 300.0, jitter=lambda: 1.0)
    assert [high.next("n") for _ in range(11)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert [low.next("n") for _ in range(3)] == [0.5, 1.0, 2.0]  # jitter: half to all of the delay
    assert high.failures("n") == 11 and high.next("other") == 1.0  # per node
    high.forget("n")
    assert high.failures("n") == 0 and high.next("n") == 1.0
    for _ in range(2000):  # never overflows, never above the cap
        assert high.next("x") <= 300.0


def test_the_job_store_finds_a_nodes_jobs_by_index_and_keeps_it_in_step():
    def job(name, node):
        return {"metadata": {"name": name, "annotations": {NODE_ANNOTATION: node}}}

    jobs = JobStore({"j1": job("j1", "a"), "j2": job("j2", "b")})
    jobs["j3"] = job("j3", "a")
    assert [j["metadata"]["name"] for j in jobs.for_node("a")] == ["j1", "j3"]
    jobs["j1"] = job("j1", "b")  # re-annotated: moves
    jobs.pop("j2")
    assert [j["metadata"]["name"] for j in jobs.for_node("a")] == ["j3"]
    assert [j["metadata"]["name"] for j in jobs.for_node("b")] == ["j1"]
    jobs.replace({})
    assert jobs.for_node("a") == [] and len(jobs) == 0


def test_a_store_iterates_over_a_copy_while_others_write():
    store = Store({str(i): i for i in range(100)})
    for name in store:  # a writer meanwhile does not break the iteration
        store[f"new-{name}"] = 0
        store.pop(name)
    assert len(store) == 100 and all(k.startswith("new-") for k in store)
    assert store.setdefault("x", 1) == 1 and store.setdefault("x", 2) == 1 and "x" in store


def test_holds_back_off_a_temporary_error_and_say_a_permanent_one_once():
    from dhc.controller.workqueue import Holds

    clock = Clock()
    holds = Holds(Backoff(1.0, 4.0, jitter=lambda: 1.0), permanent_s=3600.0, clock=clock)
    assert holds.failed("g", False, "HTTP 503") == (1.0, False) and holds.held("g")
    clock.now += 1.0
    assert not holds.held("g") and holds.failed("g", False, "HTTP 503") == (2.0, False)
    assert holds.failed("p", True, "HTTP 403 forbidden") == (3600.0, True)  # news: report it
    assert holds.failed("p", True, "HTTP 403 forbidden") == (3600.0, False)  # the same again: not news
    assert holds.next_due() == clock.now + 2.0
    holds.keep(lambda key: key == "g")  # p's candidates changed: forgotten, backoff and all
    assert not holds.held("p") and holds.failed("p", True, "HTTP 403 forbidden") == (3600.0, True)
    holds.forget("g")
    assert holds.failed("g", False, "HTTP 503") == (1.0, False)  # a success reset the backoff


def test_a_backoff_says_when_its_delay_is_at_the_cap():
    backoff = Backoff(1.0, 4.0, jitter=lambda: 1.0)
    delays = [backoff.next("list nodes") for _ in range(4)]
    assert delays == [1.0, 2.0, 4.0, 4.0] and backoff.capped("list nodes") and not backoff.capped("other")
    backoff.forget("list nodes")
    backoff.next("list nodes")
    assert not backoff.capped("list nodes")


def test_a_store_tells_its_listeners_of_each_change_after_the_write():
    store, seen = Store(), []
    store.listen(lambda name, value: seen.append((name, value, name in store if name else None)))
    store["a"] = 1
    store.setdefault("a", 2)  # there already: no change
    store.setdefault("b", 3)
    store.pop("a")
    store.pop("zzz")  # not there: no change
    store.replace({"c": 4})
    assert seen == [("a", 1, True), ("b", 3, True), ("a", None, False), (None, None, None)]
