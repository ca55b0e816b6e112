"""The artifact cache at its edges: read-only and wrong locations, broken converted models, what crashed writers
leave, and the line a wait on another process's lock prints."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock

from unlock_eval.cache import ArtifactCache, cache_root, save_artifact, tmp_prefix
from unlock_eval.errors import ConfigError

from conftest import requires_models

STATES = "s" * 24


# ------------------------------------------------------------------------------------------------------- helpers


@contextmanager
def read_only(path: Path):
    """`path` read-only to this process. As root chmod stops no write, so a read-only bind mount of `path` onto
    itself (needs CAP_SYS_ADMIN, as in the dev container and CI); other users: chmod. Skips where neither works."""
    path = Path(path)
    if os.geteuid() != 0:
        dirs = [path, *(p for p in path.rglob("*") if p.is_dir())]
        for d in dirs:
            d.chmod(0o555)
        try:
            yield
        finally:
            for d in dirs:
                d.chmod(0o755)
        return
    if subprocess.run(["mount", "--bind", path, path], capture_output=True).returncode != 0:
        pytest.skip("running as root and a bind mount is not permitted: no way to make a directory read-only")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", path, path], capture_output=True).returncode != 0:
            pytest.skip("running as root and a read-only remount is not permitted")
        yield
    finally:
        if subprocess.run(["umount", path], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", path], capture_output=True)


def assert_read_only(path: Path) -> None:
    with pytest.raises(OSError):
        (path / "probe").write_text("x")


def write_tiny_gguf(path: Path) -> Path:
    """A 1-layer llama GGUF (d=16, 64 tokens, float32) written by the `gguf` package: converts in about a second."""
    import gguf

    rng = np.random.default_rng(0)
    d, ff, vocab = 16, 32, 64
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(64)
    w.add_embedding_length(d)
    w.add_block_count(1)
    w.add_feed_forward_length(ff)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_rope_dimension_count(d // 2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(["<pad>", "<s>", "</s>"] + [chr(97 + i % 26) * (1 + i // 26) for i in range(vocab - 3)])
    w.add_token_types([3, 3, 3] + [1] * (vocab - 3))
    w.add_token_merges(["a a"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    shapes = {"token_embd": (vocab, d), "output_norm": (d,), "output": (vocab, d)}
    shapes.update({f"blk.0.{n}": (d,) for n in ("attn_norm", "ffn_norm")})
    shapes.update({f"blk.0.attn_{n}": (d, d) for n in ("q", "k", "v", "output")})
    shapes.update({"blk.0.ffn_gate": (ff, d), "blk.0.ffn_up": (ff, d), "blk.0.ffn_down": (d, ff)})
    for name, shape in shapes.items():
        w.add_tensor(f"{name}.weight", rng.standard_normal(shape).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def tmp_name(final: str, pid: int, tail: str = "x") -> str:
    """A temporary entry of `final` as `pid` (of this host) would name it."""
    return f"{tmp_prefix(final).replace(f'.{os.getpid()}-', f'.{pid}-')}{tail}.tmp"


def build_states(cache: ArtifactCache, key: str = STATES):
    return cache.get_or_build("states", key, lambda: ({"states": torch.ones(2, 3)}, {"n": 3}))


# ------------------------------------------------------------------------------------------------ wrong locations


def test_a_cache_location_that_is_a_file_is_one_line_naming_the_argument(tmp_path, monkeypatch, tiny_gguf):
    from unlock_eval.models import resolve_model

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for where in (a_file, a_file / "below"):
        with pytest.raises(ConfigError, match=rf"cache_dir={where}: {a_file} is a file"):
            ArtifactCache(where)
        with pytest.raises(ConfigError, match="cache_dir="):
            resolve_model(str(tiny_gguf), cache_dir=where)
    monkeypatch.setenv("UNLOCK_EVAL_CACHE_DIR", str(a_file))
    with pytest.raises(ConfigError, match=rf"UNLOCK_EVAL_CACHE_DIR={a_file}: {a_file} is a file"):
        ArtifactCache()
    with pytest.raises(ConfigError, match="UNLOCK_EVAL_CACHE_DIR="):
        resolve_model(str(tiny_gguf))
    with pytest.raises(ConfigError, match="cache_dir is empty"):
        cache_root("")
    assert cache_root(tmp_path / "not-yet") == tmp_path / "not-yet"  # missing is fine: it is made on first build


def test_diagnose_with_a_file_as_cache_dir_is_one_line(tmp_path, tiny_world, capsys):
    from unlock_eval.cli import main

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    argv = ["diagnose", "--source", tiny_world["src"], "--target", tiny_world["tgt"], "--cache-dir", str(a_file)]
    assert main([*argv, "--extract-from", tiny_world["questions"], "--n", "8", "--k", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unlock-eval diagnose: error: cache_dir=") and "is a file" in err and "\n" not in err


# -------------------------------------------------------------------------------------------- read-only caches


def test_a_warm_read_only_cache_serves_and_a_missing_artifact_is_one_line(tmp_path):
    root = tmp_path / "cache"
    build_states(ArtifactCache(root))
    shutil.rmtree(root / "locks")  # as a cache copied without its lock files would be
    with read_only(root):
        assert_read_only(root)
        cache = ArtifactCache(root)
        with cache.lock("build", "b" * 24) as held:  # a whole configuration's lock: nothing to guard here
            assert held is False
            tensors, meta = build_states(cache)
        assert meta == {"n": 3} and cache.hits == 1 and not (root / "locks").exists()
        with pytest.raises(ConfigError) as missing:
            build_states(cache, "t" * 24)
        message = str(missing.value)
        assert f"the cache {root} is not writable" in message and f"states artifact {'t' * 24}" in message
        assert "cache_dir=" in message and "UNLOCK_EVAL_CACHE_DIR" in message and "\n" not in message


def test_a_damaged_artifact_in_a_read_only_cache_is_one_line_not_a_traceback(tmp_path, caplog):
    root = tmp_path / "cache"
    cache = ArtifactCache(root)
    build_states(cache)
    path = cache.path("states", STATES)
    path.write_bytes(path.read_bytes()[:-8])
    with read_only(root), pytest.raises(ConfigError, match="is not writable"):
        build_states(ArtifactCache(root))
    assert path.is_file()  # left as it was: a read-only cache is nobody's to clean


def test_an_empty_read_only_directory_is_one_line(tmp_path, tiny_gguf):
    from unlock_eval.models import resolve_model

    root = tmp_path / "empty"
    root.mkdir()
    with read_only(root):
        with pytest.raises(ConfigError, match=rf"the cache {root} is not writable .* lacks the converted model of"):
            resolve_model(str(tiny_gguf), cache_dir=root)
        with pytest.raises(ConfigError, match="lacks the states artifact"):
            build_states(ArtifactCache(root))


def test_a_converted_model_loads_from_a_read_only_cache(tmp_path, tiny_gguf):
    from unlock_eval.models import load_model, resolve_model

    root = tmp_path / "cache"
    folder = resolve_model(str(tiny_gguf), cache_dir=root).pretrained
    for lock in root.rglob("*.lock"):
        lock.unlink()
    with read_only(root):
        assert resolve_model(str(tiny_gguf), cache_dir=root).pretrained == folder
        model, _ = load_model(str(tiny_gguf), cache_dir=root)
        assert model.config.num_hidden_layers == 1


@requires_models
def test_the_embedded_model_resolves_from_a_read_only_cache(tmp_path):
    """The embedded Gemma is assembled from chunks into the cache under a lock: a warm read-only cache needs none.
    Its assembled GGUF and converted copy are hard links into the checkout's cache (nothing is written to them)."""
    from unlock_eval.models import resolve_model

    warm = resolve_model("gemma3-270m")  # converted in the checkout's cache (conftest)
    root = tmp_path / "cache"
    shared = Path(warm.pretrained)
    for source in [shared, shared.parents[1] / "gguf"]:
        target = root / source.relative_to(shared.parents[1])
        target.mkdir(parents=True)
        for file in source.iterdir():
            if file.is_file() and not file.name.endswith(".lock"):
                os.link(file, target / file.name)
    with read_only(root):
        resolved = resolve_model("gemma3-270m", cache_dir=root)
    assert resolved.pretrained == str(root / shared.relative_to(shared.parents[1]))
    assert resolved.identity == warm.identity


def test_an_unlock_run_starts_warm_from_a_read_only_cache(tmp_path, tiny_world):
    from unlock_eval.model_adapters.unlock import UnlockLM

    args = dict(source=tiny_world["src"], target=tiny_world["tgt"], k=2, n=8)
    args.update(extract_from=tiny_world["questions"], cache_dir=str(tmp_path / "cache"))
    cold = UnlockLM(**args)
    assert cold.steering.extraction_forward_passes > 0
    with read_only(tmp_path / "cache"):
        assert_read_only(tmp_path / "cache")
        warm = UnlockLM(**args)
    assert warm.steering.extraction_forward_passes == 0
    assert warm.steering.artifacts.hashes == cold.steering.artifacts.hashes


# ----------------------------------------------------------------------------------------- converted models


def converted_folder(root: Path) -> Path:
    (folder,) = [p for p in (root / "converted").iterdir() if p.is_dir() and not p.name.endswith(".tmp")]
    return folder


def test_a_broken_converted_model_is_rebuilt_with_one_warning(tmp_path, tiny_gguf, caplog):
    """Truncated weights, a broken config.json, and (in a folder converted before sizes and hashes were recorded) a
    truncated safetensors file: each is named in one warning and converted again; the model then loads."""
    from unlock_eval.models import MARKER, load_model, resolve_model

    root = tmp_path / "cache"
    folder = Path(resolve_model(str(tiny_gguf), cache_dir=root).pretrained)
    marker = json.loads((folder / MARKER).read_text())

    def damage(name: str, how) -> None:
        path = folder / name
        path.write_bytes(how(path.read_bytes()))

    cases = [
        ("model.safetensors", lambda b: b[: len(b) // 2], False),
        ("config.json", lambda b: b"{ broken" + b[8:], False),
        ("model.safetensors", lambda b: b[:-100], True),  # legacy marker: checked by structure
    ]
    for name, how, legacy in cases:
        if legacy:
            (folder / MARKER).write_text(json.dumps({k: v for k, v in marker.items() if k != "files"}))
        damage(name, how)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            model, _ = load_model(str(tiny_gguf), cache_dir=root)
        broken = [r.getMessage() for r in caplog.records if "is broken" in r.getMessage()]
        assert len(broken) == 1 and name in broken[0] and "converting it again" in broken[0], (name, broken)
        assert model.config.num_hidden_layers == 1
    assert [p.name for p in (root / "converted").iterdir() if p.name.endswith(".tmp")] == []
    files = json.loads((folder / MARKER).read_text())["files"]  # what the check compares with
    assert set(files) >= {"model.safetensors", "config.json", "tokenizer.json"}
    umask = os.umask(0o022)
    os.umask(umask)
    assert {(folder / name).stat().st_mode & 0o777 for name in files} == {0o666 & ~umask}  # shareable, not private


def test_a_warm_converted_model_is_checked_without_reading_its_weights(tmp_path, tiny_gguf, monkeypatch):
    """Sizes, and hashes memoised by mtime since the conversion wrote them: a warm start hashes nothing."""
    import unlock_eval.cache as cache_module
    from unlock_eval.models import resolve_model

    root = tmp_path / "cache"
    resolve_model(str(tiny_gguf), cache_dir=root)
    hashed = []
    real = cache_module.sha256_of
    monkeypatch.setattr(cache_module, "sha256_of", lambda path: hashed.append(path) or real(path))
    resolve_model(str(tiny_gguf), cache_dir=root)
    assert hashed == []


# ------------------------------------------------------------------------------------- leftovers of dead writers


def test_leftovers_of_dead_writers_are_removed_and_of_live_ones_kept(tmp_path, tiny_gguf, caplog):
    from unlock_eval.models import resolve_model

    root = tmp_path / "cache"
    dead = dead_pid()
    converted, states = root / "converted", root / "states"
    converted.mkdir(parents=True)
    states.mkdir()
    left = {
        "dead_conversion": converted / tmp_name("x-v2", dead),
        "live_conversion": converted / tmp_name("x-v2", os.getpid()),
        "old_style": converted / "y-v2.ab12cd.tmp",  # no writer named: never touched
        "dead_states": states / tmp_name(f"{'u' * 24}.safetensors", dead),
        "live_states": states / tmp_name(f"{'v' * 24}.safetensors", os.getpid()),
        "dead_states_in_use": states / tmp_name(f"{'w' * 24}.safetensors", dead),
    }
    for name, path in left.items():
        if "conversion" in name or name == "old_style":
            path.mkdir()
            (path / "model.safetensors").write_bytes(b"w" * 1000)
        else:
            path.write_bytes(b"s" * 100)
    cache = ArtifactCache(root)
    holder = FileLock(str(cache.lock_path("states", "w" * 24)))
    cache.lock_path("states", "w" * 24).parent.mkdir(parents=True)
    in_use = threading.Event()
    release = threading.Event()

    def hold():
        with holder:
            in_use.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    in_use.wait(10)
    try:
        with caplog.at_level(logging.WARNING):
            resolve_model(str(tiny_gguf), cache_dir=root)  # a conversion: cleans converted/
            build_states(cache)  # a build: cleans states/
    finally:
        release.set()
        thread.join()
    gone = {name for name, path in left.items() if not path.exists()}
    assert gone == {"dead_conversion", "dead_states"}
    assert any("crashed writers" in r.getMessage() and left["dead_conversion"].name in r.getMessage()
               for r in caplog.records)  # fmt: skip


def test_cache_list_says_whose_leftover_a_temporary_entry_is(tmp_path):
    from unlock_eval.cache_admin import list_entries

    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / tmp_name("k1", dead_pid())).mkdir()
    (merged / tmp_name("k2", os.getpid())).mkdir()
    described = [e.description for e in sorted(list_entries(tmp_path), key=lambda e: e.name)]
    assert "left by a crashed writer" in described[0] and f"being written by pid {os.getpid()}" in described[1]


KILLED_CONVERSION = """
import sys
from unlock_eval.models import resolve_model
resolve_model(sys.argv[1], cache_dir=sys.argv[2])  # killed at crash_point("convert"): weights written, marker not
"""


@pytest.mark.process
def test_a_conversion_killed_midway_leaves_nothing_the_next_run_keeps(tmp_path, tiny_gguf):
    from unlock_eval.models import MARKER, resolve_model

    root = tmp_path / "cache"
    env = {**os.environ, "UNLOCK_EVAL_CRASH_AT": "convert"}
    proc = subprocess.run([sys.executable, "-c", KILLED_CONVERSION, str(tiny_gguf), str(root)], timeout=300, env=env)
    assert proc.returncode == -signal.SIGKILL
    (left,) = [p for p in (root / "converted").iterdir() if p.name.endswith(".tmp")]
    assert (left / "model.safetensors").is_file() and not (left / MARKER).exists()
    folder = Path(resolve_model(str(tiny_gguf), cache_dir=root).pretrained)
    assert (folder / MARKER).is_file() and not left.exists()


# --------------------------------------------------------------------------------------------------- lock waits


def test_a_wait_on_another_process_lock_is_said_with_what_and_the_lock(tmp_path, caplog):
    cache = ArtifactCache(tmp_path)
    lock_path = cache.lock_path("states", STATES)
    lock_path.parent.mkdir(parents=True)
    held, release = threading.Event(), threading.Event()

    def other_process():  # another FileLock on the same file: the kernel's lock, as between two processes
        with FileLock(str(lock_path)):
            held.set()
            release.wait(30)
            save_artifact(cache.path("states", STATES), {"states": torch.zeros(1)}, {"by": "other"})

    thread = threading.Thread(target=other_process)
    thread.start()
    held.wait(10)
    threading.Timer(0.5, release.set).start()
    with caplog.at_level(logging.WARNING, logger="unlock_eval.cache"):
        start = time.monotonic()
        _, meta = build_states(cache)
    thread.join()
    lines = [r.getMessage() for r in caplog.records]
    assert meta == {"by": "other"} and time.monotonic() - start >= 0.4  # it waited, then loaded theirs
    assert any(f"waiting for the states artifact {STATES}" in m and str(lock_path) in m for m in lines), lines
    assert any("another process is building it" in m for m in lines)
    assert any(m.startswith(f"unlock-eval: got the lock for the states artifact {STATES}") for m in lines), lines
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="unlock_eval.cache"):
        build_states(cache, "t" * 24)  # a free lock: not a word
    assert not caplog.records
