"""core.codeid: the code identity checked at the registry's edge (each refusal names
its field), the digest over what decides the code's behaviour only, and the phrases
that say what changed, against hand-written expectations."""

from __future__ import annotations

import hashlib

import pytest

from core.codeid import check_code, code_changes, code_digest, comparable, describe
from core.digest import canonical_json
from core.errors import ValidationError

A = {"worker": "ppo", "distribution": "agent", "version": "0.3", "python": "3.11.7",
     "packages": {"numpy": "2.1.3", "gymnasium": "1.0.0"},
     "git": {"commit": "a" * 40, "diff_sha256": "", "diff_bytes": 0, "untracked": 0,
             "root": "/home/me/agent"}}


def with_git(**git: object) -> dict:
    return {**A, "git": {**A["git"], **git}}


@pytest.mark.parametrize("code, field", [
    ("text", "code"),
    ({"worker": 3}, "code.worker"),
    ({"colour": "red"}, "code.colour"),
    ({"packages": ["numpy"]}, "code.packages"),
    ({"packages": {"numpy": 2}}, "code.packages.numpy"),
    ({"packages": {f"p{i}": "1" for i in range(65)}}, "code.packages"),
    ({"git": "abc"}, "code.git"),
    ({"git": {"diff_bytes": -1}}, "code.git.diff_bytes"),
    ({"git": {"untracked": True}}, "code.git.untracked"),
    ({"git": {"commit": 7}}, "code.git.commit"),
    ({"git": {"diff_truncated": "yes"}}, "code.git.diff_truncated"),
    ({"python": "x" * 5000}, "code.python"),
])
def test_a_malformed_identity_is_refused_naming_the_field(code: object, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        check_code(code)
    assert err.value.field == field


def test_a_well_formed_identity_is_kept_as_it_is() -> None:
    assert check_code(A) == A
    assert check_code(None) == {} and check_code({}) == {}


def test_the_digest_is_over_what_decides_behaviour_only() -> None:
    expected = hashlib.sha256(canonical_json({
        "worker": "ppo", "distribution": "agent", "version": "0.3", "python": "3.11.7",
        "packages": {"numpy": "2.1.3", "gymnasium": "1.0.0"},
        "git": {"commit": "a" * 40, "diff_sha256": ""}}).encode()).hexdigest()
    assert code_digest(A) == expected
    assert code_digest({}) == ""
    # where the checkout lies and how big the diff is do not change what runs
    assert code_digest(with_git(root="/elsewhere", diff_bytes=9, untracked=2)) == expected
    for other in (with_git(commit="b" * 40), with_git(diff_sha256="c" * 64),
                  {**A, "python": "3.12.1"}, {**A, "packages": {"numpy": "2.2.0"}},
                  {**A, "version": "0.4"}, {**A, "worker": "sac"}):
        assert code_digest(other) != expected
    assert "root" not in comparable(A)["git"]


def test_what_changed_is_said_in_words() -> None:
    assert code_changes(A, A) == []
    assert code_changes(A, with_git(commit="b" * 40)) == [
        f"commit {'a' * 12} -> {'b' * 12}"]
    assert code_changes(A, with_git(diff_sha256="d" * 64)) == ["uncommitted diff added"]
    assert code_changes(with_git(diff_sha256="d" * 64), with_git(diff_sha256="e" * 64)) == \
        ["uncommitted diff changed"]
    assert code_changes(with_git(diff_sha256="d" * 64), A) == ["uncommitted diff gone"]
    assert code_changes(A, {**A, "python": "3.12.1",
                            "packages": {"numpy": "2.2.0", "torch": "2.5.1"}}) == [
        "python 3.11.7 -> 3.12.1", "gymnasium 1.0.0 -> absent", "numpy 2.1.3 -> 2.2.0",
        "torch absent -> 2.5.1"]
    assert code_changes({}, A) == ["code identity not recorded before"]
    assert code_changes(A, {}) == ["code identity not recorded now"]


def test_one_line_describes_an_identity() -> None:
    assert describe(A) == f"agent 0.3, git {'a' * 12}, python 3.11.7"
    assert describe(with_git(diff_sha256="9f8e7d6c" + "0" * 56)) == \
        f"agent 0.3, git {'a' * 12} + uncommitted diff 9f8e7d6c, python 3.11.7"
    no_git = {k: v for k, v in A.items() if k != "git"}
    assert describe({**no_git, "git_error": "not a git repository"}) == \
        "agent 0.3, git unreadable (not a git repository), python 3.11.7"
    assert describe({}) == "not recorded"


def test_a_checkout_on_a_network_file_system_is_not_watched(monkeypatch) -> None:
    """runtime/checkoutwatch.py trusts inotify only where every change comes through
    this machine's kernel: local file systems, none of another kind mounted inside."""
    from runtime import checkoutwatch
    mounts = [("/", "ext4"), ("/home", "nfs4"), ("/data", "xfs"), ("/data/shared", "lustre"),
              ("/my dir", "tmpfs")]
    monkeypatch.setattr(checkoutwatch, "_mounts", lambda: mounts)
    assert checkoutwatch.fs_type("/home/me/agent", mounts) == "nfs4"
    assert checkoutwatch.fs_type("/srv/agent", mounts) == "ext4"
    assert checkoutwatch.local(["/srv/agent", "/srv/agent/pkg"])
    assert not checkoutwatch.local(["/home/me/agent", "/home/me/agent/pkg"])
    assert not checkoutwatch.local(["/data", "/data/agent"])   # lustre mounted inside it
    assert checkoutwatch.local(["/data/agent/pkg"])
    assert checkoutwatch.watch(["/home/me/agent"]) is None
    assert checkoutwatch.with_parents("/t", ["a/b/c.py", "d.py"]) == {"/t", "/t/a", "/t/a/b"}
