"""The poison guard's record on its own: deaths counted across lives, cleared when handled."""

from __future__ import annotations

from pathlib import Path

from gateway.downlink.poison import MAX_ENTRIES, PoisonGuard

SHA_A = "a" * 64
SHA_B = "b" * 64


def test_two_deaths_while_handling_make_a_message_poison(tmp_path: Path) -> None:
    path = tmp_path / "downlink-handling.json"
    PoisonGuard(path).begin(SHA_A)  # the process dies here
    second = PoisonGuard(path)
    assert not second.is_poison(SHA_A)
    second.begin(SHA_A)  # and dies again
    third = PoisonGuard(path)
    assert third.is_poison(SHA_A)
    third.finish(SHA_A)
    assert not PoisonGuard(path).is_poison(SHA_A)


def test_a_handled_message_is_forgotten_and_others_keep_their_count(tmp_path: Path) -> None:
    path = tmp_path / "downlink-handling.json"
    PoisonGuard(path).begin(SHA_A)  # dies once handling A
    guard = PoisonGuard(path)
    guard.begin(SHA_B)
    guard.finish(SHA_B)  # a shorter record over a longer one: padded, still valid JSON
    guard.begin(SHA_A)  # dies handling A again
    assert PoisonGuard(path).is_poison(SHA_A)
    assert not PoisonGuard(path).is_poison(SHA_B)


def test_the_record_is_bounded_and_a_damaged_one_is_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "downlink-handling.json"
    guard = PoisonGuard(path)
    for n in range(MAX_ENTRIES * 3):
        guard.begin(f"{n:064x}")
    assert len(guard._deaths) <= MAX_ENTRIES
    path.write_text("{not json", encoding="utf-8")
    assert not PoisonGuard(path).is_poison(SHA_A)
    path.write_text("", encoding="utf-8")
    assert PoisonGuard(path)._load() == {}
