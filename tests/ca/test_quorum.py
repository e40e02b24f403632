"""k-of-n quorum shares: any k combine to the activation PIN; anything else is refused by name."""

from __future__ import annotations

import itertools

import pytest

from ca.ceremony import quorum as q
from ca.errors import CeremonyRefused

CUSTODIANS = ["Nguyễn Văn An", "Trần Thị Bình", "Lê Minh Châu"]


@pytest.fixture(scope="module")
def split() -> q.QuorumPlan:
    return q.split("offline-root", "test-root", CUSTODIANS, 2)


def stored(plan: q.QuorumPlan) -> q.QuorumCheck:
    return q.QuorumCheck(plan.token_label, plan.threshold, len(plan.shares), plan.salt,
                         plan.secret_check, plan.commitments)


def parsed(plan: q.QuorumPlan, *indexes: int) -> list[q.Share]:
    return [q.parse_share(plan.shares[i - 1].text, "offline-root", f"share{i}") for i in indexes]


def test_any_two_of_three_give_the_same_pin(split: q.QuorumPlan) -> None:
    for pair in itertools.permutations((1, 2, 3), 2):
        pin, who = q.combine(stored(split), parsed(split, *pair))
        assert pin == split.activation_pin
        assert {w["custodian"] for w in who} == {CUSTODIANS[i - 1] for i in pair}
    pin, _ = q.combine(stored(split), parsed(split, 1, 2, 3))
    assert pin == split.activation_pin


def test_the_database_keeps_no_share(split: q.QuorumPlan) -> None:
    public = split.shares_json() + split.salt + split.secret_check
    for share in split.shares:
        value = q.SHARE_LINE.search(share.text).group(2)  # type: ignore[union-attr]
        assert value not in public
    assert split.activation_pin not in public


def test_one_share_is_not_enough(split: q.QuorumPlan) -> None:
    with pytest.raises(CeremonyRefused, match=r"needs 2 of 3 custodian shares; 1 valid"):
        q.combine(stored(split), parsed(split, 3))


def test_the_same_share_twice_counts_once(split: q.QuorumPlan) -> None:
    with pytest.raises(CeremonyRefused, match="share 2 was entered twice"):
        q.combine(stored(split), parsed(split, 2, 2))


def test_a_mistyped_share_fails_its_checksum(split: q.QuorumPlan) -> None:
    text = split.shares[1].text
    line = q.SHARE_LINE.search(text).group(0)  # type: ignore[union-attr]
    digit = line[len("share-secret: 2-")]
    typo = line.replace("2-" + digit, "2-" + ("0" if digit != "0" else "1"), 1)
    with pytest.raises(CeremonyRefused, match="custodian-2.share failed its checksum"):
        q.parse_share(text.replace(line, typo), "offline-root", "custodian-2.share")


def test_a_forged_share_with_a_valid_checksum_is_named(split: q.QuorumPlan) -> None:
    """Someone who knows the format makes a share with a correct checksum: the commitment
    stored at the root ceremony still tells it apart, before anything is combined."""
    forged_value = bytes(16)
    forged = q.Share(2, forged_value, "forged.share")
    assert q.parse_share(f"2-{forged_value.hex()}-{q._checksum('offline-root', 2, forged_value)}",
                         "offline-root", "forged.share") == forged
    with pytest.raises(CeremonyRefused, match=r"share 2 from forged.share failed its check.*"
                                              r"Trần Thị Bình"):
        q.combine(stored(split), [parsed(split, 1)[0], forged])


def test_a_share_of_another_token_is_refused(split: q.QuorumPlan) -> None:
    with pytest.raises(CeremonyRefused, match="another token"):
        q.parse_share(split.shares[0].text, "other-root", "custodian-1.share")


def test_share_document_is_marked_and_readable() -> None:
    plan = q.split("offline-root", "demo", CUSTODIANS, 2, demo=True)
    assert plan.shares[0].text.startswith("DEMO ONLY")
    assert "custodian: Nguyễn Văn An" in plan.shares[0].text
    assert "share: 1 of 3 (2 needed)" in plan.shares[0].text


@pytest.mark.parametrize("threshold", [1, 4])
def test_threshold_must_fit(threshold: int) -> None:
    with pytest.raises(CeremonyRefused, match="threshold"):
        q.split("offline-root", "x", CUSTODIANS, threshold)
