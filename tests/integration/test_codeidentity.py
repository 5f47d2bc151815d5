"""runtime.codeidentity on a real git checkout the test makes, installed "editable"
(a dist-info with PEP 610's direct_url.json, as pip writes it): the commit; the diff of
tracked edits and untracked files, which `git apply` turns back into the edited code;
the user's index and work tree untouched; a worker that is not an editable install,
one in a folder that is not a checkout, one not installed; the reader's metadata cache
read again once a package is installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from runtime.codeidentity import IdentityReader, code_identity, save

GROUPS = ("trainer.workers",)


def git(repo: str, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


def install(site: str, name: str, version: str, editable_dir: str | None) -> None:
    info = os.path.join(site, f"{name.replace('-', '_')}-{version}.dist-info")
    os.makedirs(info)
    files = {"METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                         "Requires-Dist: numpy\nRequires-Dist: pytest ; extra == 'test'\n",
             "entry_points.txt": f"[trainer.workers]\n{name} = agent:main\n", "RECORD": ""}
    if editable_dir is not None:
        files["direct_url.json"] = json.dumps({"url": f"file://{editable_dir}",
                                               "dir_info": {"editable": True}})
    for fname, text in files.items():
        with open(os.path.join(info, fname), "w", encoding="utf-8") as fh:
            fh.write(text)


@pytest.fixture
def checkout(tmp_path) -> tuple[str, list[str]]:
    repo, site = str(tmp_path / "agent"), str(tmp_path / "site")
    os.makedirs(os.path.join(repo, "pkg"))
    os.makedirs(site)
    git(repo, "init", "-q")
    with open(os.path.join(repo, "pkg", "agent.py"), "w", encoding="utf-8") as fh:
        fh.write("LR = 0.1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    install(site, "ppo-agent", "0.3", os.path.join(repo, "pkg"))  # a subfolder of it
    return repo, [site, *sys.path]


def test_a_clean_checkout_gives_its_commit_and_no_diff(checkout) -> None:
    repo, path = checkout
    found = code_identity("ppo-agent", GROUPS, path)
    assert found is not None and found.diff == b""
    code = found.code
    assert code["distribution"] == "ppo-agent" and code["version"] == "0.3"
    assert code["git"]["commit"] == git(repo, "rev-parse", "HEAD")
    assert code["git"]["diff_sha256"] == "" and code["git"]["untracked"] == 0
    # its requirements' versions (numpy), not those of an optional extra (pytest)
    assert "numpy" in code["packages"] and "pytest" not in code["packages"]
    assert code["python"] == ".".join(map(str, sys.version_info[:3]))


def test_the_diff_brings_the_edited_code_back_and_nothing_is_written(checkout, tmp_path) -> None:
    repo, path = checkout
    with open(os.path.join(repo, "pkg", "agent.py"), "w", encoding="utf-8") as fh:
        fh.write("LR = 0.3\n")
    with open(os.path.join(repo, "pkg", "new_module.py"), "w", encoding="utf-8") as fh:
        fh.write("EXTRA = True\n")
    status_before = git(repo, "status", "--porcelain")  # (which may refresh the index)
    index = os.path.join(repo, ".git", "index")
    with open(index, "rb") as fh:
        index_before = fh.read()
    found = code_identity("ppo-agent", GROUPS, path)
    assert found is not None
    state = found.code["git"]
    assert state["untracked"] == 1 and state["diff_bytes"] == len(found.diff) > 0
    assert len(state["diff_sha256"]) == 64
    with open(index, "rb") as fh:
        assert fh.read() == index_before      # the user's index is not touched
    assert status_before == "M pkg/agent.py\n?? pkg/new_module.py"
    assert git(repo, "status", "--porcelain") == status_before
    # the diff on a clone at the commit gives the edited code back
    clone = str(tmp_path / "clone")
    subprocess.run(["git", "clone", "-q", repo, clone], check=True)
    rel = save(str(tmp_path / "run"), "submit", found)
    assert rel == os.path.join("code", "submit.json")
    git(clone, "apply", str(tmp_path / "run" / "code" / "submit.diff"))
    with open(os.path.join(clone, "pkg", "agent.py"), encoding="utf-8") as fh:
        assert fh.read() == "LR = 0.3\n"
    with open(os.path.join(clone, "pkg", "new_module.py"), encoding="utf-8") as fh:
        assert fh.read() == "EXTRA = True\n"
    with open(tmp_path / "run" / "code" / "submit.json", encoding="utf-8") as fh:
        assert json.load(fh) == found.code
    # another edit, another hash
    with open(os.path.join(repo, "pkg", "agent.py"), "w", encoding="utf-8") as fh:
        fh.write("LR = 0.5\n")
    again = code_identity("ppo-agent", GROUPS, path)
    assert again is not None and again.code["git"]["diff_sha256"] != state["diff_sha256"]


def test_without_an_editable_checkout_there_is_no_git_part(tmp_path) -> None:
    site = str(tmp_path / "site")
    install(site, "wheel-agent", "1.0", None)
    found = code_identity("wheel-agent", GROUPS, [site])
    assert found is not None and "git" not in found.code and "git_error" not in found.code
    plain = str(tmp_path / "not-a-checkout")
    os.makedirs(plain)
    install(str(tmp_path / "site2"), "loose-agent", "1.0", plain)
    loose = code_identity("loose-agent", GROUPS, [str(tmp_path / "site2")])
    assert loose is not None and "git" not in loose.code
    assert "not a git repository" in loose.code["git_error"]
    assert code_identity("nobody", GROUPS, [site]) is None


def test_the_reader_reads_the_metadata_again_once_a_package_is_installed(checkout) -> None:
    repo, path = checkout
    read = IdentityReader(GROUPS, path[:1])
    first = read("ppo-agent")
    assert first is not None and first.code["version"] == "0.3"
    assert read("ppo-agent").code == first.code     # (from the cache: same answer)
    site = path[0]
    old = os.path.join(site, "ppo_agent-0.3.dist-info")
    os.rename(old, os.path.join(site, "ppo_agent-0.4.dist-info"))
    meta = os.path.join(site, "ppo_agent-0.4.dist-info", "METADATA")
    with open(meta, encoding="utf-8") as fh:
        text = fh.read().replace("Version: 0.3", "Version: 0.4")
    with open(meta, "w", encoding="utf-8") as fh:
        fh.write(text)
    upgraded = read("ppo-agent")
    assert upgraded is not None and upgraded.code["version"] == "0.4"


def test_the_reader_reads_the_checkout_again_only_after_a_change(checkout) -> None:
    """The reader's inotify watch (runtime/checkoutwatch.py): no change, no new
    reading; each kind of change, one, whose identity shows it."""
    repo, path = checkout
    read = IdentityReader(GROUPS, path)
    first = read("ppo-agent")
    assert first is not None and read.git_readings == 1
    for _ in range(5):
        assert read("ppo-agent").code == first.code
    assert read.git_readings == 1                      # nothing changed: no git run
    seen = {first.code["git"]["diff_sha256"]}

    def changed_by(action, *args: str) -> dict:
        before = read.git_readings
        action(*args)
        found = read("ppo-agent")
        assert found is not None and read.git_readings == before + 1, action
        assert read("ppo-agent").code == found.code and read.git_readings == before + 1
        return found.code["git"]

    def write(rel: str, text: str) -> None:
        full = os.path.join(repo, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "a", encoding="utf-8") as fh:
            fh.write(text)

    for rel, text in (("pkg/agent.py", "GAMMA = 0.9\n"),      # a tracked file edited
                      ("pkg/extra.py", "A = 1\n"),             # an untracked file added
                      ("pkg/extra.py", "B = 2\n"),             # ... and edited
                      ("deep/new/mod.py", "C = 3\n")):         # in new folders
        state = changed_by(write, rel, text)
        assert state["diff_sha256"] not in seen
        seen.add(state["diff_sha256"])
    write("deep/new/more.py", "D = 4\n")                       # inside a folder made since
    latest = read("ppo-agent").code["git"]
    assert latest["untracked"] == 3 and latest["diff_sha256"] not in seen
    state = changed_by(git, repo, "add", "-A")                 # staged: the same diff
    assert state["diff_sha256"] == latest["diff_sha256"] and state["untracked"] == 0
    state = changed_by(git, repo, "commit", "-q", "-m", "two")
    assert state["commit"] == git(repo, "rev-parse", "HEAD") and state["diff_sha256"] == ""
    old = first.code["git"]["commit"]
    state = changed_by(git, repo, "checkout", "-q", old)       # another commit checked out
    assert state["commit"] == old and state["diff_sha256"] == ""


def test_runs_submitted_with_one_diff_share_one_copy(tmp_path) -> None:
    from runtime.codeidentity import save_diff
    store = str(tmp_path / "code-diffs")
    for run in ("r1", "r2"):
        assert save_diff(str(tmp_path / run), "submit", b"diff --git a/x b/x\n", store) == \
            os.path.join("code", "submit.diff")
    one, two = (os.stat(tmp_path / r / "code" / "submit.diff") for r in ("r1", "r2"))
    assert one.st_ino == two.st_ino and one.st_nlink == 3 and len(os.listdir(store)) == 1
    with open(tmp_path / "r2" / "code" / "submit.diff", "rb") as fh:
        assert fh.read() == b"diff --git a/x b/x\n"
