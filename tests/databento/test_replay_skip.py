"""`ReplaySkip`: where Live replays from after sessions ended on a record its client cannot decode."""

from __future__ import annotations

from hydra_daemon.databento.live_stream import REPLAY_OVERLAP_NS, SKIP_STEPS_NS, ReplaySkip

S = 1_000_000_000
NOW = 10_000 * S


def _after_undecodable_ends(count: int) -> ReplaySkip:
    skip = ReplaySkip()
    for _ in range(count):
        skip.session_ended(undecodable=True, streamed=True)
    return skip


def test_the_second_undecodable_end_in_a_row_skips_and_each_further_one_skips_further() -> None:
    skip = ReplaySkip()
    skip.session_ended(undecodable=True, streamed=True)
    assert skip.target(100 * S, NOW) is None, "one end may be a passing fault: replay as usual"
    targets = []
    for _ in range(len(SKIP_STEPS_NS) + 1):
        skip.session_ended(undecodable=True, streamed=True)
        targets.append(skip.target(100 * S, NOW))
    assert targets == [100 * S + step for step in (*SKIP_STEPS_NS, SKIP_STEPS_NS[-1])]


def test_any_other_end_or_progress_past_the_skip_starts_the_count_again() -> None:
    skip = _after_undecodable_ends(2)
    assert skip.target(100 * S, NOW) == 101 * S
    skip.session_ended(undecodable=True, streamed=True)
    assert skip.target(170 * S, NOW) == 180 * S, "the fill (to 161 s) and a few Live seconds past it: the next step"
    skip.session_ended(undecodable=True, streamed=True)
    assert skip.target(400 * S, NOW) is None, (
        "Live stored an overlap past the fill: a new record (maybe a passing fault)"
    )
    skip.session_ended(undecodable=False, streamed=True)
    skip.session_ended(undecodable=True, streamed=True)
    assert skip.target(300 * S, NOW) is None


def test_a_record_too_new_for_historical_waits_for_the_clock() -> None:
    skip = _after_undecodable_ends(2)
    assert skip.target(NOW - 30 * S, NOW) is None, "Historical cannot fill past now: replay as usual meanwhile"
    assert skip.target(NOW - 30 * S, NOW + 100 * S) == NOW - 29 * S
    assert skip.target(NOW - 30 * S, NOW + 100 * S) == NOW - 29 * S, "the same end counts once"
    skip.session_ended(undecodable=True, streamed=True)
    skip.session_ended(undecodable=True, streamed=True)  # the step is 60 s now
    assert skip.target(NOW - 30 * S, NOW + 45 * S) == NOW + 45 * S - REPLAY_OVERLAP_NS, "one overlap before now"


def test_a_session_that_never_streamed_leaves_the_skip_as_it_was() -> None:
    """The skip's own Historical fill failing (its range not served yet) reset the count: the next sessions went back
    to the record, and a fill that kept failing kept capture stuck there."""
    skip = _after_undecodable_ends(2)
    assert skip.target(100 * S, NOW) == 101 * S
    skip.session_ended(undecodable=False, streamed=False)
    assert skip.target(100 * S, NOW) == 101 * S, "the same skip again"
