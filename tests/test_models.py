"""Student model, checkpoints (safetensors + JSON, verified) and the text teacher."""

import json

import numpy as np
import pytest
import torch

import omnimap.teachers.registry as registry
import omnimap.teachers.store as teacher_store
from omnimap.core.errors import DataError
from omnimap.core.store import ArrayStore
from omnimap.models.checkpoint import load_checkpoint
from omnimap.models.student import Student, build_student
from omnimap.teachers.registry import get_teacher
from omnimap.teachers.store import CachedTeacher
from omnimap.teachers.text import TextTeacher


def test_fusion_adds_then_normalises():
    o = torch.tensor([[3.0, 0.0]])
    m = torch.tensor([[0.0, 4.0]])
    torch.testing.assert_close(Student.fuse(o, m), torch.tensor([[0.6, 0.8]]))
    torch.testing.assert_close(Student.fuse(o, None), torch.tensor([[1.0, 0.0]]))
    with pytest.raises(ValueError):
        Student.fuse(None, None)


def test_dynamic_encoder_is_sat2cap_mlp():
    s = build_student({"dim": 32, "overhead": {"type": "patch_cnn"}, "dynamic": {}})
    layers = list(s.dynamic.net)
    assert [type(layer).__name__ for layer in layers] == ["Linear", "ReLU", "Linear"]
    assert (
        layers[0].in_features == 12
        and layers[0].out_features == 64
        and layers[2].out_features == 32
    )


def test_unknown_overhead_type_is_rejected():
    with pytest.raises(ValueError, match="unknown overhead"):
        build_student({"dim": 8, "overhead": {"type": "vit-huge"}})


def test_checkpoint_round_trip(tiny_model_dir):
    model = load_checkpoint(tiny_model_dir)
    patches = torch.randint(0, 255, (3, 3, 16, 16), dtype=torch.uint8)
    meta = torch.randn(3, 12)
    out = model.student(patches, meta)
    assert out.shape == (3, 16)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    again = load_checkpoint(tiny_model_dir)
    torch.testing.assert_close(again.student(patches, meta), out)
    assert model.key == again.key and model.key.startswith("tiny-")
    assert not any(p.requires_grad for p in model.student.parameters())


def _copy_model(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_corrupt_weights_are_detected(tiny_model_dir, tmp_path):
    bad = _copy_model(tiny_model_dir, tmp_path / "bad")
    data = bytearray((bad / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (bad / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(DataError, match="does not match"):
        load_checkpoint(bad)


def test_truncated_weights_with_matching_digest_fail_cleanly(tiny_model_dir, tmp_path):
    from omnimap.models.checkpoint import file_digest

    bad = _copy_model(tiny_model_dir, tmp_path / "trunc")
    w = bad / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    cfg = json.loads((bad / "config.json").read_text())
    cfg["weights_digest"] = file_digest(w)
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="cannot load model weights"):
        load_checkpoint(bad)


def test_bad_config_and_missing_model(tiny_model_dir, tmp_path):
    bad = _copy_model(tiny_model_dir, tmp_path / "cfg")
    (bad / "config.json").write_text("{not json")
    with pytest.raises(DataError, match="corrupt model config"):
        load_checkpoint(bad)
    (bad / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(DataError, match="not an omnimap model"):
        load_checkpoint(bad)
    with pytest.raises(DataError, match="neither a directory nor a built-in"):
        load_checkpoint(tmp_path / "nowhere")


def test_checkpoint_never_holds_pickles(tiny_model_dir):
    raw = (tiny_model_dir / "model.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    assert header["__metadata__"]["format"] == "omnimap.student/1"
    assert b"\x80\x04" not in raw[:16]  # not a pickle protocol header


def test_text_encoder_loads_local_dir_and_mean_pools(tiny_teacher_dir):
    from transformers import AutoModel, AutoTokenizer

    enc = TextTeacher(str(tiny_teacher_dir))
    texts = ["sand dunes in the desert", "a city at night"]
    vecs = enc.embed("text", texts)
    assert vecs.shape == (2, 16) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    tok, model = (
        AutoTokenizer.from_pretrained(tiny_teacher_dir),
        AutoModel.from_pretrained(tiny_teacher_dir),
    )
    batch = tok(texts[:1], return_tensors="pt")
    with torch.no_grad():
        manual = model(**batch).last_hidden_state.mean(1)
    np.testing.assert_allclose(
        vecs[0], torch.nn.functional.normalize(manual, dim=-1)[0].numpy(), atol=1e-5
    )
    assert enc.key.startswith("local:")


def test_text_encoder_batches_and_order(tiny_teacher_dir):
    enc = TextTeacher(str(tiny_teacher_dir), batch_size=2)
    texts = ["ice", "a forest of trees and snow in winter", "sea", "the city lights at night"]
    together = enc.embed("text", texts)
    alone = np.concatenate([enc.embed("text", [t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def segments(teacher):
    return sorted(teacher.store("text").store.directory.glob("*.bin"))


def test_cached_text_encoder_embeds_each_text_once(tiny_teacher_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("OMNIMAP_CACHE_DIR", str(tmp_path))
    registry._shared.cache_clear()
    enc = get_teacher(str(tiny_teacher_dir))
    calls = []
    original = enc.teacher.embed

    def counting(modality, texts, progress=False):
        calls.append(list(texts))
        return original(modality, texts)

    monkeypatch.setattr(enc.teacher, "embed", counting)
    first = enc.embed("text", ["snow", "sea", "snow"])
    second = enc.embed("text", ["sea", "snow", "forest"])
    assert calls == [["snow", "sea"], ["forest"]]
    np.testing.assert_allclose(first[1], second[0])
    assert len(segments(enc)) == 2  # one small segment per call
    # A new process reads the segments instead of embedding again.
    registry._shared.cache_clear()
    fresh = get_teacher(str(tiny_teacher_dir))
    monkeypatch.setattr(fresh.teacher, "embed", counting)
    np.testing.assert_allclose(fresh.embed("text", ["forest", "snow"]), [second[2], first[0]])
    assert len(calls) == 2
    # A corrupt segment is deleted and its texts embedded again.
    for seg in segments(enc):
        seg.write_bytes(b"garbage")
    registry._shared.cache_clear()
    again = get_teacher(str(tiny_teacher_dir))
    np.testing.assert_allclose(again.embed("text", ["snow"])[0], first[0], atol=1e-6)
    assert len(segments(again)) == 1
    registry._shared.cache_clear()


def test_text_cache_merges_small_segments_while_it_runs(tiny_teacher_dir, monkeypatch, tmp_path):
    """One process adding one prompt at a time (a server) keeps few segments, and the
    largest segment (the training descriptions) is never rewritten for them."""
    monkeypatch.setattr(teacher_store, "MAX_SEGMENTS", 3)

    def cached():
        return CachedTeacher(TextTeacher(str(tiny_teacher_dir)), ArrayStore("text", root=tmp_path))

    enc = cached()
    big = ["a", "an", "the", "of", "in", "on", "at", "and", "with", "sand", "dunes"]
    enc.embed("text", big)
    (largest,) = segments(enc)
    words = ["snow", "sea", "ice", "city", "forest", "jungle", "hills"]
    vectors = [enc.embed("text", [w])[0] for w in words]
    assert 2 <= len(segments(enc)) <= 3
    assert largest in segments(enc)
    merged = cached()
    np.testing.assert_allclose(merged.embed("text", words), np.stack(vectors), atol=1e-6)
    np.testing.assert_allclose(merged.embed("text", big), enc.embed("text", big), atol=1e-6)
    assert len(segments(merged)) <= 3


def test_missing_text_model_is_a_data_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot load model"):
        TextTeacher(str(tmp_path / "empty")).embed("text", ["x"])


def test_save_checkpoint_writes_atomically(tmp_path, monkeypatch):
    import omnimap.models.checkpoint as ck

    student = build_student(
        {"dim": 8, "overhead": {"type": "patch_cnn", "channels": [4, 8], "hidden": 8}}
    )

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", boom)
    with pytest.raises(OSError):
        ck.save_checkpoint(
            student, {"name": "x", "dim": 8, "overhead": {"type": "patch_cnn"}}, tmp_path / "m"
        )
    assert list((tmp_path / "m").iterdir()) == []
