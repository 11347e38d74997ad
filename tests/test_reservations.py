"""The starvation guard: who reserves which worker, for whom, and when it ends."""

from __future__ import annotations

from fleet_hwmon.scoring.decide import Exclusion
from fleet_hwmon.scoring.reservations import Reservations

GPU_ROOM = "predicted gpu 130% of the least busy GPU > 100%"


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
    room = (Exclusion("a100", GPU_ROOM), Exclusion("cpu", "lacks gpu"), Exclusion("old", "stale: last sample 40 s ago"))
    assert waited(res, "big", 50.0, *room) is None  # not long enough yet
    assert declined(res, "big", 60.0, *room) == "a100"  # hardware and stale workers are never reserved
    assert res.reserved() == {"a100": "big"}
    # A GPU reservation keeps other GPU tasks off the worker; CPU tasks still use it.
    assert res.blocked("small", True, 75.0) == {"a100": "reserved for big (train), waiting 75 s"}
    assert res.blocked("unit", False, 75.0) == {}
    assert res.blocked("big", True, 75.0) == {}
    # Placed (anywhere): the reservation ends.
    res.observe("big", "train", "h100", (), 80.0, after_s=60.0, expire_s=15.0)
    assert res.reserved() == {} and res.blocked("small", True, 80.0) == {}


def test_a_reservation_for_cpu_or_memory_room_keeps_every_other_task_off():
    res = Reservations()
    for now_s in (0.0, 10.0, 20.0):
        declined(res, "build", now_s, Exclusion("w1", "predicted cpu 125% of 8 cores > 100%"),
                 Exclusion("w2", "cpu at 99% > critical 95%"), task_type="build", after_s=20.0)
    assert res.reserved() == {"w1": "build"}
    assert set(res.blocked("unit", False, 20.0)) == {"w1"}


def test_one_reservation_per_task_type_for_its_oldest_waiting_task():
    res = Reservations()
    room = (Exclusion("a", GPU_ROOM), Exclusion("b", GPU_ROOM))
    waited(res, "first", 50.0, *room)
    assert waited(res, "second", 70.0, *room, since_s=5.0) is None  # not the oldest of its type
    assert declined(res, "first", 70.0, *room) == "a"
    assert declined(res, "second", 75.0, *room) is None  # its type already holds one
    # Another type may reserve another worker, never one already reserved.
    assert waited(res, "infer", 70.0, *room, task_type="infer") == "b"
    assert waited(res, "data", 70.0, Exclusion("a", GPU_ROOM), task_type="data") is None


def test_a_task_no_longer_asked_about_releases_its_worker():
    res = Reservations()
    assert waited(res, "big", 60.0, Exclusion("a100", GPU_ROOM)) == "a100"
    # The coordinator stopped asking (cancelled, or placed by other means): after expire_s it ends.
    declined(res, "other", 100.0, task_type="other")
    assert res.reserved() == {}
    # Asked again later, it waits afresh.
    assert declined(res, "big", 101.0, Exclusion("a100", GPU_ROOM)) is None


def test_a_worker_that_leaves_frees_its_task_to_reserve_another():
    res = Reservations()
    room = (Exclusion("a", GPU_ROOM), Exclusion("b", GPU_ROOM))
    assert waited(res, "big", 60.0, *room) == "a"
    res.worker_left("a")
    assert res.reserved() == {}
    assert declined(res, "big", 70.0, Exclusion("b", GPU_ROOM)) == "b"
