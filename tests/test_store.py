"""The one store: atomic, verified, bounded; a cache that fails never breaks a caller."""

import numpy as np
import pytest

from omnimap.core.store import ArrayStore, MemoryStore


def files(root):
    return sorted(p.name for p in root.rglob("*") if p.is_file())


def test_writer_leaves_nothing_on_failure(tmp_path):
    store = ArrayStore("cells", root=tmp_path)
    with store.writer("k", (4, 2), np.float32) as w:
        w.write(np.ones((2, 2)))  # only half the rows: dropped, nothing raised
    assert store.get("k") is None and files(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):  # e.g. Ctrl-C mid-write
        with store.writer("k", (4, 2), np.float32) as w:
            w.write(np.ones((2, 2)))
            raise KeyboardInterrupt
    assert files(tmp_path) == []
    with store.writer("k", (4, 2), np.float16) as w:
        w.write(np.arange(8).reshape(4, 2))
    entry = store.get("k")
    assert entry.read_rows(1, 3).tolist() == [[2, 3], [4, 5]]
    assert entry.read().dtype == np.float16 and store.get("other") is None


def test_named_arrays_round_trip_and_damage_is_a_miss(tmp_path):
    store = ArrayStore("embeddings", root=tmp_path)
    keys, vectors = np.arange(6, dtype=np.uint64).reshape(3, 2), np.eye(3, 4, dtype=np.float32)
    assert store.put("seg", {"keys": keys, "vectors": vectors})
    got = store.read("seg")
    np.testing.assert_array_equal(got["keys"], keys)
    np.testing.assert_array_equal(got["vectors"], vectors)
    assert store.keys() == ["seg"]
    data = next(tmp_path.rglob("*.bin"))
    raw = bytearray(data.read_bytes())
    raw[5] ^= 0xFF
    data.write_bytes(bytes(raw))
    assert store.read("seg") is None and store.get("seg") is None  # removed, recomputed later


def test_memory_store_shares_read_only_entries():
    store = MemoryStore(max_bytes=1024)
    with store.writer("k", (2, 2), np.float32) as w:
        w.write(np.ones((2, 2)))
    a = store.get("k").read()
    assert not a.flags.writeable and store.read("k")["data"] is a
    assert not store.fits((1024,), np.float32) and store.fits((8,), np.float32)
