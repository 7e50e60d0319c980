"""The API benchmark hands every booking body out once, per list: create's and create with
transport's lists each have their own place (a shared one once started create with
transport past the end of its shorter list, so every request repeated a booking)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from bench.api.__main__ import Runner, Scenario


def runner(tmp_path: Path) -> Runner:
    server = SimpleNamespace(port=1, process=SimpleNamespace(pid=1))
    return Runner(SimpleNamespace(), None, server, tmp_path, "token")


def test_each_list_of_bodies_is_handed_out_from_its_own_start(tmp_path):
    run = runner(tmp_path)
    plain, carried = [b"p"] * 10, [b"c"] * 3

    assert run.take(plain, 4) == 0
    assert run.take(plain, 4) == 4
    assert run.take(carried, 2) == 0
    assert run.take(plain, 1) == 8
    assert run.take(carried, 2) == 2


def test_requests_use_each_body_once_and_stop_at_the_end(tmp_path):
    run = runner(tmp_path)
    bodies = [f'{{"n": {n}}}'.encode() for n in range(5)]
    scenario = Scenario(
        "create", "create", "POST", "/api/appointments/", bodies, unique_bodies=True
    )

    first, second, third = (run.requests(scenario, 2) for _ in range(3))

    assert [b'"n": 0' in r for r in first] == [True, False]
    assert b'"n": 2' in second[0] and b'"n": 3' in second[1]
    assert len(third) == 1 and b'"n": 4' in third[0]
    assert run.requests(scenario, 1) == []


def test_bodies_a_run_did_not_send_go_to_the_next_run(tmp_path):
    """A run's share is sized for the fastest rate the scenario might reach; on a fast
    machine the warm-up's share alone once took most of create with transport's bodies, so
    its load levels ran out and measured conflicts."""
    run = runner(tmp_path)
    bodies = [b"b"] * 100

    start = run.take(bodies, 60)
    run.give_back(bodies, start + 2 * 7)  # two threads took seven each
    assert run.take(bodies, 10) == 14
    run.give_back(bodies, 90)  # never past what was taken
    assert run.take(bodies, 1) == 24
