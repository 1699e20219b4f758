"""Fault definitions and their schedules, evaluated with an injected clock."""

from __future__ import annotations

from typing import Any

import pytest

from simdev.plugin.faults import (
    Clock,
    FaultError,
    Schedule,
    is_active,
    next_change,
    parse_duration,
    parse_fault,
    parse_faults,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("1m30s", 90), ("2h", 7200), ("1.5s", 1.5), ("1h1m1s", 3661)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "30", "s", "1d", "-1s", "1 s", "1m30"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_no_schedule_is_always_on() -> None:
    s = Schedule()
    assert all(s.active(t) for t in (0, 1, 1e6))
    assert s.next_change(5) is None


def test_start_after_and_duration() -> None:
    s = Schedule(start_after=10, duration=5)
    assert [s.active(t) for t in (0, 9.99, 10, 14.99, 15, 100)] == [
        False,
        False,
        True,
        True,
        False,
        False,
    ]
    assert s.next_change(0) == 10
    assert s.next_change(12) == 15
    assert s.next_change(20) is None


def test_flapping_repeats_every_period() -> None:
    s = Schedule(duration=20, every=40)
    on = [t for t in range(0, 160, 5) if s.active(t)]
    assert on == [0, 5, 10, 15, 40, 45, 50, 55, 80, 85, 90, 95, 120, 125, 130, 135]
    assert s.next_change(0) == 20
    assert s.next_change(25) == 40
    assert s.next_change(45) == 60


def test_flapping_after_a_delay() -> None:
    s = Schedule(start_after=5, duration=1, every=3)
    assert s.next_change(0) == 5
    assert s.next_change(5.5) == 6
    assert s.next_change(6) == 8
    assert [s.active(t) for t in (5, 6, 7, 8, 8.9, 9)] == [True, False, False, True, True, False]


def fault(**raw: Any) -> dict[str, Any]:
    return {"name": "f", "type": "Unhealthy", **raw}


def test_clock_keeps_anchor_until_the_definition_changes() -> None:
    (f,) = parse_faults([fault(schedule={"duration": "10s"})])
    clock = Clock().advance([f], now=100)
    assert clock.started(f) == 100
    assert clock.advance([f], now=200).started(f) == 100
    (edited,) = parse_faults([fault(schedule={"duration": "20s"})])
    assert clock.advance([edited], now=200).started(edited) == 200
    # A removed fault loses its clock: listing it again starts it anew.
    assert clock.advance([], now=300).advance([f], now=400).started(f) == 400


def test_recorded_anchor_wins_over_our_own() -> None:
    (f,) = parse_faults([fault(schedule={"duration": "10s"})])
    ours = Clock().advance([f], now=105)
    recorded = Clock({"f": (f.definition, 100.0)})
    clock = ours.advance([f], now=106, known=recorded)
    assert clock.started(f) == 100
    assert not is_active(f, clock, now=110.5)
    assert is_active(f, clock, now=109.5)
    # A recording of an older definition is ignored.
    stale = Clock({"f": ("older", 1.0)})
    assert Clock().advance([f], now=50, known=stale).started(f) == 50


def test_next_change_over_several_faults() -> None:
    faults = parse_faults(
        [
            fault(name="a", schedule={"startAfter": "30s"}),
            fault(name="b", schedule={"duration": "5s", "every": "10s"}),
            fault(name="c"),
        ]
    )
    clock = Clock().advance(faults, now=1000)
    assert next_change(faults, clock, 1000) == 1005
    assert next_change(faults, clock, 1006) == 1010
    assert next_change(faults[:1], clock, 1031) is None


def test_device_choice_by_indices_count_and_percent() -> None:
    by_index = parse_fault(fault(devices={"indices": [0, 3, 9]}))
    assert by_index.unhealthy_indices("n", 4) == {0, 3}
    everything = parse_fault(fault())
    assert everything.unhealthy_indices("n", 3) == {0, 1, 2}
    two = parse_fault(fault(devices={"count": 2}, seed=7))
    picked = two.unhealthy_indices("node-a", 6)
    assert len(picked) == 2 and picked <= set(range(6))
    # Deterministic for a node and seed, so a run can be repeated ...
    assert parse_fault(fault(devices={"count": 2}, seed=7)).unhealthy_indices("node-a", 6) == picked
    # ... and not the same devices on every node.
    others = {frozenset(two.unhealthy_indices(f"node-{i}", 6)) for i in range(20)}
    assert len(others) > 1
    assert parse_fault(fault(devices={"count": 10})).unhealthy_indices("n", 3) == {0, 1, 2}
    half = parse_fault(fault(devices={"percent": 50}))
    assert len(half.unhealthy_indices("n", 5)) == 2  # rounded down
    assert parse_fault(fault(devices={"percent": 0})).unhealthy_indices("n", 5) == frozenset()


def test_node_selector_matches_labels() -> None:
    f = parse_fault(fault(nodeSelector={"zone": "a", "gpu": "yes"}))
    assert f.matches({"zone": "a", "gpu": "yes", "other": "x"})
    assert not f.matches({"zone": "a"})
    assert parse_fault(fault()).matches({})


def test_full_allocate_error_fault() -> None:
    f = parse_fault(
        {"name": "flaky", "type": "AllocateError", "probability": 0.25, "code": "UNAVAILABLE"}
    )
    assert (f.probability, f.code) == (0.25, "UNAVAILABLE")
    assert parse_fault({"name": "x", "type": "AllocateError"}).code == "INTERNAL"
    delay = parse_fault({"name": "slow", "type": "AllocateDelay", "delay": "1m"})
    assert delay.delay == 60


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "Bad_Name", "type": "Unhealthy"}, "name must be a DNS label"),
        ({"name": "x", "type": "Melted"}, "x).type must be one of"),
        ({"name": "x", "type": "AllocateDelay"}, "delay is required"),
        ({"name": "x", "type": "Unhealthy", "delay": "1s"}, "delay may only be set"),
        ({"name": "x", "type": "AllocateError", "devices": {"count": 1}}, "devices may only"),
        ({"name": "x", "type": "Unhealthy", "probability": 0.5}, "probability may only"),
        ({"name": "x", "type": "AllocateError", "probability": 1.5}, "probability must be"),
        ({"name": "x", "type": "AllocateError", "code": "OK"}, "code must be a gRPC"),
        (fault(name="x", schedule={"every": "10s"}), "every must be longer"),
        (fault(name="x", schedule={"every": "10s", "duration": "10s"}), "every must be longer"),
        (fault(name="x", schedule={"duration": "soon"}), "schedule.duration"),
        (fault(name="x", devices={"count": 1, "percent": 5}), "exactly one of"),
        (fault(name="x", devices={"percent": 101}), "at most 100"),
        (fault(name="x", devices={"indices": [-1]}), "non-negative"),
        (fault(name="x", seed="1"), "seed must be an integer"),
    ],
)
def test_invalid_faults_name_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(FaultError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_fault(raw)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(FaultError, match="'a' is used twice"):
        parse_faults([fault(name="a"), fault(name="a", type="PluginDown")])
