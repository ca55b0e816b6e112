"""`unlock-eval cache list/prune`: what the cache holds, last use, and pruning that respects locks and the root."""

import json
import os
import time
from types import SimpleNamespace

import pytest
import torch
from filelock import FileLock

from unlock_eval.cache import ArtifactCache, mark_used, save_artifact
from unlock_eval.cache_admin import list_entries, prune
from unlock_eval.errors import ConfigError

DAY = 86400
STATES_META = {"artifact": "states", "model_spec": "tiny-llama", "n": 2, "template": "Q: {question}\nA:"}


def make_cache(root):
    """A cache with one entry of each kind; returns {kind: path}. Sizes are known by construction."""
    cache = ArtifactCache(root)
    cache.get_or_build("states", "s" * 24, lambda: ({"states": torch.zeros(3, 2, 4)}, dict(STATES_META)))
    masterkey_meta = {
        "locked": {"model": "tiny-llama", "states": "s" * 24},
        "unlocked": {"model": "tiny-llama", "states": "u" * 24},
        "aggregator": "mean",
        "n": 2,
    }
    save_artifact(root / "masterkey" / f"{'m' * 24}.safetensors", {"vectors": torch.ones(3, 4)}, masterkey_meta)
    merged = root / "merged" / "k1"
    merged.mkdir(parents=True)
    (merged / "unlock_eval_merge.json").write_text(json.dumps({"description": "gemma3-270m + 1.0 x (a - b)"}))
    (merged / "model.safetensors").write_bytes(b"w" * 1000)
    converted = root / "converted" / "x-v2"
    converted.mkdir(parents=True)
    (converted / "unlock_eval_source.json").write_text(json.dumps({"gguf_file": "/models/tiny.Q4.gguf", "sha256": "0"}))
    (converted / "model.safetensors").write_bytes(b"c" * 500)
    (root / "gguf").mkdir()
    (root / "gguf" / "tiny.gguf").write_bytes(b"g" * 300)
    tmp = root / "merged" / "k2.ab12cd.tmp"  # a crashed (or running) atomic_directory write of merged/k2
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes(b"t" * 70)
    return {
        "states": cache.path("states", "s" * 24),
        "masterkey": root / "masterkey" / f"{'m' * 24}.safetensors",
        "merged": merged,
        "converted": converted,
        "gguf": root / "gguf" / "tiny.gguf",
        "tmp": tmp,
    }


def dir_size(path):
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def test_list_finds_each_entry_with_its_kind_size_and_description(tmp_path):
    paths = make_cache(tmp_path)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.bin"
    outside.write_bytes(b"o" * 5000)
    (paths["merged"] / "link.bin").symlink_to(outside)  # its target is not counted (and never deleted)
    by_name = {e.name: e for e in list_entries(tmp_path)}
    assert sorted((e.kind, name) for name, e in by_name.items()) == [
        ("converted", "x-v2"),
        ("gguf", "tiny.gguf"),
        ("masterkey", "m" * 24),
        ("merged", "k1"),
        ("merged", "k2.ab12cd.tmp"),
        ("states", "s" * 24),
    ]
    assert by_name["k1"].size_bytes == dir_size(paths["merged"]) + len(str(outside)) < 5000
    assert by_name["k1"].description == "gemma3-270m + 1.0 x (a - b)"
    assert by_name["x-v2"].size_bytes == dir_size(paths["converted"])
    assert by_name["x-v2"].description == "from tiny.Q4.gguf"
    assert by_name["tiny.gguf"].size_bytes == 300
    assert by_name["k2.ab12cd.tmp"].size_bytes == 70 and "incomplete" in by_name["k2.ab12cd.tmp"].description
    states = by_name["s" * 24]
    assert states.size_bytes == paths["states"].stat().st_size
    assert states.description.startswith("tiny-llama locked n=2 template 'Q: {question}")  # role from the key
    assert by_name["m" * 24].description == "tiny-llama locked->unlocked mean n=2"
    assert by_name["k1"].last_used == paths["merged"].stat().st_mtime
    assert [e.kind for e in list_entries(tmp_path, ["merged"])] == ["merged", "merged"]
    assert list_entries(tmp_path / "missing") == []


def test_a_cache_hit_marks_the_artifact_used(tmp_path):
    cache = ArtifactCache(tmp_path)
    build = lambda: ({"states": torch.zeros(2)}, dict(STATES_META))  # noqa: E731
    cache.get_or_build("states", "abc", build)
    old = time.time() - 30 * DAY
    os.utime(cache.path("states", "abc"), (old, old))
    assert list_entries(tmp_path)[0].last_used == pytest.approx(old)
    cache.get_or_build("states", "abc", build)
    assert cache.hits == 1 and cache.builds == 1
    assert list_entries(tmp_path)[0].last_used > time.time() - 60
    mark_used(tmp_path / "no-such-file")  # never raises: a read-only or vanished entry is not an error


def test_prune_by_kind_removes_only_that_kind(tmp_path):
    paths = make_cache(tmp_path)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.bin"
    outside.write_bytes(b"o")
    (paths["merged"] / "link.bin").symlink_to(outside)
    removed, skipped = prune(tmp_path, kinds=["merged"])
    assert sorted(e.name for e in removed) == ["k1", "k2.ab12cd.tmp"] and skipped == []
    assert not paths["merged"].exists() and not paths["tmp"].exists()
    assert all(paths[k].exists() for k in ("states", "masterkey", "converted", "gguf"))
    assert (tmp_path / "merged").is_dir() and outside.is_file()  # the kind directory stays; links are not followed


def test_prune_older_than_uses_last_use(tmp_path):
    paths = make_cache(tmp_path)
    old = time.time() - 10 * DAY
    for key in ("merged", "states", "gguf"):
        os.utime(paths[key], (old, old))
    with FileLock(f"{paths['gguf']}.lock"):  # a reused GGUF keeps its mtime (its hash is memoised by it) ...
        mark_used(f"{paths['gguf']}.lock")  # ... its lock file's mtime says when it was last used
    removed, _ = prune(tmp_path, older_than_days=5)
    assert sorted(e.kind for e in removed) == ["merged", "states"]
    assert not paths["merged"].exists() and not paths["states"].exists()
    assert paths["gguf"].exists() and paths["converted"].exists() and paths["tmp"].exists()
    assert prune(tmp_path, older_than_days=5, kinds=["converted"]) == ([], [])


def test_dry_run_removes_and_creates_nothing(tmp_path):
    make_cache(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    removed, skipped = prune(tmp_path, everything=True, dry_run=True)
    assert len(removed) == 6 and skipped == []
    assert sorted(tmp_path.rglob("*")) == before


def test_entries_in_use_are_skipped(tmp_path):
    paths = make_cache(tmp_path)
    cache = ArtifactCache(tmp_path)
    k1_lock, k2_lock = FileLock(f"{paths['merged']}.lock"), FileLock(tmp_path / "merged" / "k2.lock")
    with k1_lock, k2_lock, cache.lock("states", "s" * 24):  # k1 in use, k2 being written, a capture running
        removed, skipped = prune(tmp_path, everything=True)
    assert sorted(e.name for e, reason in skipped if reason.startswith("in use")) == ["k1", "k2.ab12cd.tmp", "s" * 24]
    assert paths["merged"].exists() and paths["tmp"].exists() and paths["states"].exists()
    assert sorted(e.kind for e in removed) == ["converted", "gguf", "masterkey"]
    assert not paths["converted"].exists() and tmp_path.is_dir()
    removed, skipped = prune(tmp_path, everything=True)  # the locks are free again
    assert len(removed) == 3 and skipped == []


def test_bad_inputs_are_config_errors(tmp_path):
    make_cache(tmp_path)
    with pytest.raises(ConfigError, match=r"unknown cache kind 'bogus'; allowed: bases, converted, .*merged"):
        list_entries(tmp_path, ["bogus"])
    with pytest.raises(ConfigError, match="unknown cache kind 'bogus'"):
        prune(tmp_path, kinds=["bogus"])
    with pytest.raises(ConfigError, match=r"older_than_days \(--older-than\) must be a number of days >= 0"):
        prune(tmp_path, older_than_days=-1)
    with pytest.raises(ConfigError, match="prune selects nothing"):
        prune(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        prune(tmp_path / "missing", everything=True)
    assert len(list_entries(tmp_path)) == 6  # nothing was touched


def test_cli_list_prune_and_errors(tmp_path, capsys):
    from unlock_eval.cli import main

    def cli(*args):  # `unlock-eval cache ARGS` in this process: its exit status, stdout and stderr
        returncode = main(["cache", *map(str, args)])
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=returncode, stdout=out, stderr=err)

    make_cache(tmp_path)
    listed = cli("list", "--cache-dir", tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["kind", "name", "size", "last", "used", "description"]
    row = next(line for line in lines if line.startswith("merged") and "k1" in line)
    assert "gemma3-270m + 1.0 x (a - b)" in row and " KB " in row and "just now" in row
    assert any(line.split()[:2] == ["total", "6"] for line in lines) and lines[-1] == f"cache: {tmp_path}"
    dry = cli("prune", "--cache-dir", tmp_path, "--kind", "merged", "--dry-run")
    assert dry.returncode == 0 and "would remove merged/k1" in dry.stdout and "would free" in dry.stdout
    bad = cli("prune", "--cache-dir", tmp_path, "--kind", "bogus")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()] and bad.stderr.startswith(
        "unlock-eval cache: error:"
    )
    assert cli("prune", "--cache-dir", tmp_path).returncode == 2  # nothing selected
    (tmp_path / "empty").mkdir()
    empty = cli("list", "--cache-dir", tmp_path / "empty")
    assert empty.returncode == 0 and "empty" in empty.stdout
    assert len(list_entries(tmp_path)) == 6
    (tmp_path / "a-file").write_text("x")
    for where, says in ((tmp_path / "missing", "does not exist"), (tmp_path / "a-file", "is a file")):
        for command in (["list"], ["prune", "--all"]):  # not "the cache is empty": one line naming it and the flag
            wrong = cli(*command, "--cache-dir", where)
            assert wrong.returncode == 2 and not wrong.stdout and len(wrong.stderr.strip().splitlines()) == 1
            assert says in wrong.stderr and str(where) in wrong.stderr and "--cache-dir" in wrong.stderr
