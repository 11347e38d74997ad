"""The starvation guard: who reserves which worker, for whom, and when it ends."""

from __future__ import annotations

from fleet_hwmon.scoring.exclusions import Exclusion, ExclusionKind
from fleet_hwmon.scoring.reservations import Reservations, fits_at_s


def gpu_room(worker_id: str) -> Exclusion:
    return Exclusion.gpu_memory_fit(worker_id, 30 * 1024**3, 10 * 1024**3, required=False)


def stale(worker_id: str) -> Exclusion:
    return Exclusion.stale(worker_id, 40.0, 15.0, never_sampled=False)


def declined(res: Reservations, task_id: str, now_s: float, *exclusions: Exclusion, task_type: str = "train",
             after_s: float = 60.0, expire_s: float = 15.0) -> str | None:
    return res.observe(task_id, task_type, None, exclusions, now_s, after_s=after_s, expire_s=expire_s)


def waited(res: Reservations, task_id: str, until_s: float, *exclusions: Exclusion, task_type: str = "train",
           since_s: float = 0.0) -> str | None:
    """Declined every 10 s from ``since_s`` until ``until_s`` (asked again well within expire_s)."""
    now_s, found = since_s, None
    while now_s <= until_s:
        found = declined(res, task_id, now_s, *exclusions, task_type=task_type) or found
        now_s += 10.0
    return found


def test_a_task_waiting_long_enough_reserves_a_worker_that_lacked_only_room():
    res = Reservations()
    room = (gpu_room("a100"), Exclusion.hardware("cpu", "lacks gpu"), stale("old"))
    assert waited(res, "big", 50.0, *room) is None  # not long enough yet
    assert declined(res, "big", 60.0, *room) == "a100"  # hardware and stale workers are never reserved
    assert res.reserved() == {"a100": "big"} and res.holds("big") and not res.holds("small")
    # A GPU reservation keeps other GPU tasks off the worker; CPU tasks still use it.
    blocked = res.blocked("small", True, 75.0)
    assert set(blocked) == {"a100"} and blocked["a100"].kind is ExclusionKind.RESERVED
    assert (blocked["a100"].reason, blocked["a100"].value) == ("reserved for big (train), waiting 75 s", 75.0)
    assert res.blocked("unit", False, 75.0) == {}
    assert res.blocked("big", True, 75.0) == {}
    # Placed (anywhere): the reservation ends.
    res.observe("big", "train", "h100", (), 80.0, after_s=60.0, expire_s=15.0)
    assert res.reserved() == {} and res.blocked("small", True, 80.0) == {} and not res.holds("big")


def test_a_reservation_for_cpu_or_memory_room_keeps_every_other_task_off():
    res = Reservations()
    for now_s in (0.0, 10.0, 20.0):
        declined(res, "build", now_s, Exclusion.memory_fit("w1", 9e9, 1e9, 25.0),
                 Exclusion.critical("w2", "memory", 99.0, 95.0), task_type="build", after_s=20.0)
    assert res.reserved() == {"w1": "build"}
    assert set(res.blocked("unit", False, 20.0)) == {"w1"}


def test_reservations_for_memory_room_are_held_depth_at_a_time_gpu_and_isolation_ones_besides():
    # With depth 1, a second type lacking memory waits its turn while the first holds "w1"; a
    # GPU task lacking GPU room still reserves (only GPU tasks are kept off its worker), and so
    # does an exclusive task waiting for a worker with nothing of ours on it.
    res = Reservations()

    def ask(task_id: str, task_type: str, now_s: float, *exclusions: Exclusion) -> str | None:
        return res.observe(task_id, task_type, None, exclusions, now_s, after_s=20.0, expire_s=60.0, depth=1)

    memory = (Exclusion.memory_fit("w1", 9e9, 1e9, 25.0), Exclusion.memory_fit("w2", 9e9, 1e9, 25.0))
    found = {}
    for now_s in (0.0, 10.0, 20.0, 30.0):
        for task_id, task_type, room in (("build", "build", memory), ("data", "data", memory),
                                         ("train", "train", (gpu_room("g1"),)),
                                         ("perf", "perf", (Exclusion.not_exclusive("w2", 2),))):
            found[task_id] = ask(task_id, task_type, now_s, *room) or found.get(task_id)
    assert found == {"build": "w1", "data": None, "train": "g1", "perf": "w2"}
    assert res.reserved() == {"w1": "build", "g1": "train", "w2": "perf"}
    res.observe("build", "build", "w1", (), 40.0, after_s=20.0, expire_s=60.0, depth=1)  # placed
    assert ask("data", "data", 41.0, *memory[:1]) == "w1"  # its turn (it has waited since 0 s)
    # Without a depth, every type lacking memory holds one at once.
    res = Reservations()
    for now_s in (0.0, 10.0, 20.0):
        res.observe("build", "build", None, memory, now_s, after_s=20.0, expire_s=60.0)
        res.observe("data", "data", None, memory, now_s, after_s=20.0, expire_s=60.0)
    assert res.reserved() == {"w1": "build", "w2": "data"}


def test_one_reservation_per_task_type_for_the_first_that_qualifies():
    res = Reservations()
    room = (gpu_room("a"), gpu_room("b"))
    for now_s in range(0, 70, 10):  # a FIFO coordinator asks the older task first in each pass
        first = declined(res, "first", float(now_s), *room)
        second = declined(res, "second", now_s + 1.0, *room)
    assert (first, second) == ("a", None) and res.reserved() == {"a": "first"}
    assert declined(res, "second", 71.0, *room) is None  # its type already holds one
    # Another type may reserve another worker, never one already reserved.
    found = {}
    for now_s in range(80, 150, 10):
        declined(res, "first", float(now_s), *room)
        found["infer"] = declined(res, "infer", now_s + 1.0, *room, task_type="infer") or found.get("infer")
        found["data"] = declined(res, "data", now_s + 2.0, gpu_room("a"), task_type="data")
    assert found == {"infer": "b", "data": None}
    assert res.reserved() == {"a": "first", "b": "infer"}


def test_a_task_that_cannot_reserve_does_not_hold_up_its_type():
    res = Reservations()
    for now_s in range(0, 80, 10):  # the oldest lacks the hardware everywhere: never a reservation
        declined(res, "huge", float(now_s), Exclusion.hardware("a", "no GPU with >= 200 GB of memory"))
        found = declined(res, "train", now_s + 1.0, gpu_room("a"))
    assert found is None and res.reserved() == {"a": "train"}


def test_a_worker_the_task_could_never_fit_is_not_reserved():
    res = Reservations()
    room = (Exclusion.memory_fit("small", 20 * 1024**3, 2 * 1024**3, 25.0),
            Exclusion.memory_fit("big", 20 * 1024**3, 8 * 1024**3, 25.0))
    for now_s in range(0, 60, 10):
        declined(res, "build", float(now_s), *room, task_type="build")
    assert res.observe("build", "build", None, room, 60.0, after_s=60.0, expire_s=15.0,
                       preference=lambda w: 0 if w == "small" else 1, fits=lambda w: w == "big") == "big"


def test_a_reservation_is_given_up_once_its_worker_could_no_longer_hold_the_task():
    # Reserved while the task fitted there once drained; later runs of its type show it needs
    # more than that worker could give it (cores a quiet task may not have there, say): the
    # drain would never end in a placement, so another worker is reserved.
    res = Reservations()
    fitting = {"small", "big"}
    room = (Exclusion.not_exclusive("small", 1), Exclusion.not_exclusive("big", 3))

    def decline(now_s: float) -> str | None:
        return res.observe("perf", "perf", None, room, now_s, after_s=30.0, expire_s=15.0,
                           preference=lambda w: 0 if w == "small" else 1, fits=fitting.__contains__)
    assert [decline(t) for t in (0.0, 10.0, 20.0, 30.0)] == [None, None, None, "small"]
    assert decline(40.0) is None and res.reserved() == {"small": "perf"}
    fitting.discard("small")
    assert decline(50.0) == "big" and res.reserved() == {"big": "perf"}


def test_a_reservation_follows_what_the_task_lacks_and_moves_off_a_stale_worker():
    res = Reservations()
    room = (gpu_room("a"), gpu_room("b"))
    assert waited(res, "big", 60.0, *room) == "a"
    assert res.blocked("unit", False, 60.0) == {}  # GPU room: CPU tasks still use it
    # CPU tasks filled its memory: now every other task is kept off.
    declined(res, "big", 65.0, Exclusion.memory_fit("a", 40 * 1024**3, 3 * 1024**3, 25.0))
    assert set(res.blocked("unit", False, 65.0)) == {"a"}
    # Not in the decision (at its slots): kept. Stale: given up, and another one reserved.
    assert declined(res, "big", 70.0, gpu_room("b")) is None and res.reserved() == {"a": "big"}
    assert declined(res, "big", 75.0, stale("a"),
                    gpu_room("b")) == "b"
    assert res.reserved() == {"b": "big"}


def test_a_task_no_longer_asked_about_releases_its_worker():
    res = Reservations()
    assert waited(res, "big", 60.0, gpu_room("a100")) == "a100"
    # The coordinator stopped asking (cancelled, or placed by other means): after expire_s it ends.
    declined(res, "other", 100.0, task_type="other")
    assert res.reserved() == {}
    # Asked again later, it waits afresh.
    assert declined(res, "big", 101.0, gpu_room("a100")) is None


def test_a_worker_that_leaves_frees_its_task_to_reserve_another():
    res = Reservations()
    room = (gpu_room("a"), gpu_room("b"))
    assert waited(res, "big", 60.0, *room) == "a"
    res.worker_left("a")
    assert res.reserved() == {}
    assert declined(res, "big", 70.0, gpu_room("b")) == "b"


def test_a_stale_reserved_worker_is_kept_while_no_other_worker_lacks_only_room():
    res = Reservations()
    assert waited(res, "llm", 60.0, gpu_room("h100"), Exclusion.hardware("a100", "no GPU with >= 80 GB")) == "h100"
    # A late heartbeat: the only worker that could ever hold it looks stale for a decision.
    assert declined(res, "llm", 65.0, stale("h100"), Exclusion.hardware("a100", "no GPU with >= 80 GB")) is None
    assert res.reserved() == {"h100": "llm"}
    assert set(res.blocked("train", True, 66.0)) == {"h100"}
    # Another worker that lacks only room: the reservation moves there.
    assert declined(res, "llm", 70.0, stale("h100"), gpu_room("h100b")) == "h100b"
    assert res.reserved() == {"h100b": "llm"}


def test_the_next_task_of_a_type_inherits_the_wait_of_the_one_its_reservation_placed():
    # A FIFO coordinator asks about the oldest waiting task of a type only: "llm-2" waited behind
    # "llm-1", unseen. When "llm-1" is placed at 70 s, "llm-2" is asked for the first time in the
    # same pass and reserves at once, instead of waiting afresh until 130 s.
    res = Reservations()
    assert waited(res, "llm-1", 60.0, gpu_room("h100"), task_type="llm") == "h100"
    res.observe("llm-1", "llm", "h100", (), 70.0, after_s=60.0, expire_s=15.0)
    assert declined(res, "llm-2", 70.0, gpu_room("h100"), task_type="llm") == "h100"
    assert res.blocked("eval", True, 70.0)["h100"].value == 70.0  # the type has waited since 0 s
    # Only a reservation's task passes its wait on, once, and only to a task seen within after_s.
    res.observe("llm-2", "llm", "h100", (), 80.0, after_s=60.0, expire_s=15.0)
    assert declined(res, "llm-3", 141.0, gpu_room("h100"), task_type="llm") is None
    assert declined(res, "train-1", 141.0, gpu_room("a100")) is None  # another type: no wait to inherit
    res.observe("unit-1", "unit", "cpu", (), 150.0, after_s=60.0, expire_s=15.0)  # never reserved anything
    assert declined(res, "unit-2", 150.0, gpu_room("a100"), task_type="unit") is None
    # A reservation for memory keeps every task off its worker: its wait is not passed on.
    memory_room = Exclusion.memory_fit("big-ram", 9e9, 1e9, 25.0)
    assert waited(res, "etl-1", 260.0, memory_room, task_type="etl", since_s=200.0) == "big-ram"
    res.observe("etl-1", "etl", "big-ram", (), 270.0, after_s=60.0, expire_s=15.0)
    assert declined(res, "etl-2", 270.0, memory_room, task_type="etl") is None


GIB = 1024**3
INF = float("inf")


def test_a_reserved_need_fits_when_the_tasks_of_ours_whose_memory_it_needs_are_predicted_to_end():
    # 2 GiB free; tasks of ours predicted to end at 150 s (3 GiB), 120 s (2 GiB), 400 s (8 GiB).
    ours = [(150.0, 3 * GIB, 0.0), (120.0, 2 * GIB, 0.0), (400.0, 8 * GIB, 0.0)]
    assert fits_at_s(100.0, 2 * GIB, None, ours, 4 * GIB, 0.0) == 120.0  # 2 + 2
    assert fits_at_s(100.0, 2 * GIB, None, ours, 7 * GIB, 0.0) == 150.0  # 2 + 2 + 3
    assert fits_at_s(100.0, 2 * GIB, None, ours, 15 * GIB, 0.0) == 400.0
    assert fits_at_s(100.0, 5 * GIB, None, ours, 4 * GIB, 0.0) == 100.0  # it fits now: nothing backfills
    # A task past its predicted end may end any moment; the others' ends are as predicted.
    assert fits_at_s(130.0, 2 * GIB, None, ours, 4 * GIB, 0.0) == 130.0
    assert fits_at_s(130.0, 2 * GIB, None, ours, 7 * GIB, 0.0) == 150.0


def test_a_reserved_need_whose_moment_is_not_known_lets_nothing_backfill():
    ours = [(150.0, 3 * GIB, 0.0), (INF, 8 * GIB, 0.0)]
    assert fits_at_s(100.0, 2 * GIB, None, ours, 12 * GIB, 0.0) == 100.0  # needs a task of unknown end
    assert fits_at_s(100.0, 2 * GIB, None, ours[:1], 12 * GIB, 0.0) == 100.0  # the background holds it
    assert fits_at_s(100.0, None, None, ours, 4 * GIB, 0.0) == 100.0  # free memory unknown
    assert fits_at_s(100.0, INF, None, ours, INF, 0.0) == 100.0  # a need not known: nothing fits beside
    # GPU memory: the one GPU's room and what each task holds there.
    gpu_ours = [(150.0, GIB, 10 * GIB), (300.0, GIB, 20 * GIB)]
    assert fits_at_s(100.0, 8 * GIB, 5 * GIB, gpu_ours, 0.0, 30 * GIB) == 300.0
    assert fits_at_s(100.0, 8 * GIB, 5 * GIB, gpu_ours, 0.0, 14 * GIB) == 150.0
    assert fits_at_s(100.0, 8 * GIB, None, gpu_ours, 0.0, 14 * GIB) == 100.0  # GPU room unknown (or several GPUs)
