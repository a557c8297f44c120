"""Sat2Cap teacher (tiny CLIP through the real loading code), the clip_vision overhead
encoder, the training config and the augmentation."""

import json

import numpy as np
import pytest
import torch

from omnimap.core.errors import DataError, InputError
from omnimap.models.checkpoint import load_checkpoint, save_checkpoint
from omnimap.models.student import build_student
from omnimap.teachers.clip import CLIPTeacher
from omnimap.teachers.registry import get_teacher
from omnimap.teachers.tiny import make_tiny_clip
from omnimap.train.augment import OPS, OverheadAugment
from omnimap.train.config import Sat2CapConfig as TrainConfig
from omnimap.train.recipes.sat2cap import architecture


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def teacher(clip_dir):
    return CLIPTeacher(clip_dir)


def test_teacher_loads_locally_and_embeds_both_towers(teacher, clip_dir):
    images = np.random.default_rng(0).integers(0, 255, (3, 40, 56, 3), dtype=np.uint8)
    v = teacher.embed_images(list(images))
    t = teacher.embed_texts(["a town at night", "a sandy beach", "a town at night"])
    assert v.shape == (3, 32) and t.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(t[0], t[2], atol=1e-6)
    assert abs(float(t[0] @ t[1])) < 0.999
    # Through the teacher protocol (and the embedding store), as maps use it.
    enc = get_teacher(str(clip_dir), "clip")
    assert enc.dim == 32 and enc.modality_key("text") == teacher.text_key
    assert enc.modalities == ("image", "text")
    np.testing.assert_allclose(enc.embed("text", ["a sandy beach"])[0], t[1], atol=1e-6)
    np.testing.assert_allclose(enc.embed("image", list(images[:1]))[0], v[0], atol=1e-6)


def test_preprocessing_resizes_shortest_edge_then_centre_crops(teacher):
    p = teacher.preprocessing
    assert (p.resize, p.crop) == (32, 32)
    wide = np.zeros((20, 60, 3), dtype=np.uint8)
    wide[:, 25:35] = 255  # a white bar in the middle survives the centre crop
    x = p.pixels(wide)
    assert x.shape == (3, 32, 32)
    white = (1 - p.mean[0]) / p.std[0]
    assert x[0, 16, 16] == pytest.approx(white, abs=0.05) and x[0, 16, 0] < 0


def test_keys_change_with_weights_and_are_stable(teacher, clip_dir, tmp_path):
    assert CLIPTeacher(clip_dir).image_key == teacher.image_key
    other = CLIPTeacher(make_tiny_clip(tmp_path / "other", seed=1))
    assert other.image_key != teacher.image_key and other.text_key != teacher.text_key


def test_missing_teacher_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot load model"):
        _ = CLIPTeacher(tmp_path / "empty").dim


def test_student_from_teacher_reproduces_teacher_and_round_trips(teacher, tmp_path):
    arch = architecture(teacher, teacher.preprocessing.mean, teacher.preprocessing.std)
    student = build_student(json.loads(json.dumps(arch)))  # the JSON config alone
    student.overhead.init_from_teacher(teacher.vision_state())
    patches = np.random.default_rng(1).integers(0, 255, (4, 3, 32, 32), dtype=np.uint8)
    with torch.no_grad():
        o = student.encode_overhead(torch.from_numpy(patches)).numpy()
    # Same weights, same normalisation: the student's o is the teacher's image embedding.
    o /= np.linalg.norm(o, axis=1, keepdims=True)
    np.testing.assert_allclose(o, teacher.embed_patches(patches), atol=1e-4)
    config = {
        "name": "s",
        **arch,
        "teacher": teacher.to_config(),
        "imagery": {"type": "bmng", "patch_size": 16},
    }
    save_checkpoint(student, config, tmp_path / "run")
    loaded = load_checkpoint(tmp_path / "run")
    meta = torch.randn(4, 12)
    torch.testing.assert_close(
        loaded.student(torch.from_numpy(patches), meta),
        student.eval()(torch.from_numpy(patches), meta),
    )
    # Any patch size works: the encoder resizes to the tower's 32 px.
    bigger = torch.zeros(2, 3, 48, 48, dtype=torch.uint8)
    assert loaded.student.encode_overhead(bigger).shape == (2, 32)


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(InputError, match="unknown training option.*stepz"):
        TrainConfig.from_dict({"pairs": "p", "stepz": 3})
    with pytest.raises(InputError, match="multiple of the global batch_size"):
        TrainConfig.from_dict({"pairs": "p", "batch_size": 64, "queue_size": 100})
    with pytest.raises(InputError, match="'lr' must be a number"):
        TrainConfig.from_dict({"pairs": "p", "lr": "fast"})
    with pytest.raises(InputError, match="'betas' must be a list of 2 numbers"):
        TrainConfig.from_dict({"pairs": "p", "betas": [0.9]})
    with pytest.raises(InputError, match="needs 'pairs'"):
        TrainConfig.from_dict({})
    path = tmp_path / "cfg.json"
    path.write_text(
        json.dumps({"pairs": "data/train.parquet", "steps": 5, "lr": 1, "betas": [0.9, 0.95]})
    )
    cfg = TrainConfig.from_file(path)
    assert (
        cfg.pairs == str(tmp_path / "data/train.parquet")
        and cfg.lr == 1.0
        and isinstance(cfg.lr, float)
    )
    assert (
        cfg.betas == (0.9, 0.95)
        and cfg.weight_decay == 0.2
        and cfg.eps == 1e-6
        and cfg.meta_dropout == 0.3
    )
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_json()))) == cfg


def test_augment_is_seeded_per_sample_and_in_range():
    aug = OverheadAugment(24, num_ops=2, magnitude=9)
    x = torch.from_numpy(np.random.default_rng(2).integers(0, 255, (8, 3, 40, 40), dtype=np.uint8))
    params = aug.sample(torch.Generator().manual_seed(5), 8, 40)
    again = aug.sample(torch.Generator().manual_seed(5), 8, 40)
    torch.testing.assert_close(params.boxes, again.boxes)
    y = aug(x, params)
    assert y.shape == (8, 3, 24, 24) and float(y.min()) >= 0 and float(y.max()) <= 1
    # A rank that holds rows 4..7 gets exactly those rows' augmentation.
    torch.testing.assert_close(aug(x[4:], params[4:]), y[4:])
    top, left, h, w = params.boxes.T
    assert bool(((top + h <= 40) & (left + w <= 40) & (h >= 1) & (w >= 1)).all())
    area = (h * w).float() / 1600
    assert bool(((area > 0.06) & (area < 1.05)).all())


def test_augment_ops_follow_torchvision_semantics():
    aug = OverheadAugment(16, magnitude=30)
    x = torch.from_numpy(
        np.random.default_rng(3).integers(0, 256, (2, 3, 16, 16)).astype(np.float32) / 255
    )
    plus = torch.ones(2)
    same = {op: aug._apply(op, x.clone(), plus) for op in OPS}
    torch.testing.assert_close(same["identity"], x)
    assert torch.allclose(same["posterize"] * 255 % 16, torch.zeros(1), atol=1e-3)  # 4 bits kept
    torch.testing.assert_close(same["solarize"], 1 - x)  # threshold 0 at full magnitude
    assert torch.allclose(same["brightness"], (1.9 * x).clamp(0, 1))
    flat = torch.full((1, 3, 16, 16), 0.5)
    torch.testing.assert_close(aug._apply("autocontrast", flat, plus[:1]), flat)
    values = (x[:1] * 255).round().long()
    expected = torch.stack([_torchvision_equalize(values[0, c]) for c in range(3)]).float() / 255
    torch.testing.assert_close(aug._apply("equalize", x[:1], plus[:1])[0], expected)
    shifted = aug._apply("translate_x", x, plus)  # 150/331 * 16 = 7.25 px right, black fill
    torch.testing.assert_close(shifted[..., 8:], x[..., 1:9])
    assert float(shifted[..., :7].abs().max()) == 0.0


def _torchvision_equalize(channel: torch.Tensor) -> torch.Tensor:
    """torchvision.transforms.functional._scale_channel, for uint8 values as int64."""
    hist = torch.bincount(channel.flatten(), minlength=256).float()
    nonzero = hist[hist != 0]
    step = torch.div(nonzero[:-1].sum(), 255, rounding_mode="floor")
    if step == 0:
        return channel
    lut = torch.div(
        torch.cumsum(hist, 0) + torch.div(step, 2, rounding_mode="floor"),
        step,
        rounding_mode="floor",
    )
    return torch.nn.functional.pad(lut, [1, 0])[:-1].clamp(0, 255)[channel]


def test_batches_are_seeded_epochs_and_the_loader_reports_errors():
    from omnimap.train.batches import batch_rows, metadata_dropped, prefetch

    epoch = np.concatenate([batch_rows(7, s, 50, 16) for s in range(3)])  # 3 full batches
    assert len(set(epoch.tolist())) == 48 and epoch.max() < 50
    nxt = batch_rows(7, 3, 50, 16)  # a new epoch, a new order
    assert not np.array_equal(nxt, epoch[:16]) and np.array_equal(nxt, batch_rows(7, 3, 50, 16))
    # Groups of rows (one place at several weeks) always share a batch, each group once an epoch.
    grouped = np.stack([batch_rows(7, s, 50, 16, group=2) for s in range(3)])
    assert (grouped[:, 1::2] - grouped[:, ::2] == 1).all() and (grouped[:, ::2] % 2 == 0).all()
    assert len(set(grouped.ravel().tolist())) == 48
    with pytest.raises(ValueError, match="multiple"):
        batch_rows(7, 0, 50, 15, group=2)
    drops = [metadata_dropped(0, s, 0.3) for s in range(2000)]
    assert 0.27 < np.mean(drops) < 0.33
    assert [s for s, _ in prefetch(lambda s: s * s, range(3, 7))] == [3, 4, 5, 6]

    def load(step: int) -> int:
        if step == 2:
            raise ValueError("bad batch")
        return step

    with pytest.raises(ValueError, match="bad batch"):
        list(prefetch(load, range(5)))
