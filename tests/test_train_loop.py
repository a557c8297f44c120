"""The one loop's pure pieces: the schedule, the input dropouts, the patch jitter, the
normalisation statistics, and the state file."""

import numpy as np
import pytest
import torch

from omnimap.core.errors import DataError
from omnimap.train.augment import PatchJitter
from omnimap.train.batches import channel_statistics, dropouts, step_generator
from omnimap.train.config import AtlasConfig, Sat2CapConfig
from omnimap.train.schedule import lr_factor, lr_scheduler


@pytest.mark.parametrize("mult", [1, 2])
def test_the_schedule_is_warm_up_then_torchs_cosine_with_warm_restarts(mult):
    cfg = AtlasConfig(steps=200, warmup_steps=10, restart_period=15, restart_mult=mult,
                      lr=1e-3, min_lr=1e-5, queue_size=0)  # fmt: skip
    assert [lr_factor(cfg, s) for s in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    param = torch.nn.Parameter(torch.zeros(1))
    reference = torch.optim.SGD([param], lr=cfg.lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        reference, T_0=15, T_mult=mult, eta_min=cfg.min_lr
    )
    for step in range(cfg.warmup_steps, cfg.steps):
        assert cfg.lr * lr_factor(cfg, step) == pytest.approx(reference.param_groups[0]["lr"])
        cosine.step()


def test_the_scheduler_resumes_at_any_step_from_the_optimizer_alone():
    cfg = Sat2CapConfig(pairs="p", steps=50, warmup_steps=5, restart_period=7, queue_size=0)

    def optimizer():
        return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=cfg.lr)

    straight = optimizer()
    schedule = lr_scheduler(straight, cfg, start=0)
    for _ in range(20):
        straight.step()
        schedule.step()
    resumed = optimizer()
    resumed.load_state_dict(straight.state_dict())
    lr_scheduler(resumed, cfg, start=20)
    assert resumed.param_groups[0]["lr"] == pytest.approx(cfg.lr * lr_factor(cfg, 20))
    assert resumed.param_groups[0]["lr"] == straight.param_groups[0]["lr"]


def test_the_atlas_default_period_is_a_third_of_the_steps_after_warm_up():
    assert AtlasConfig(steps=9_000, warmup_steps=200).first_restart_period() == 2_933
    assert Sat2CapConfig(pairs="p", steps=100).first_restart_period() == 100


def test_dropouts_are_seeded_per_step_and_never_drop_both_halves():
    draws = [dropouts(0, s, 256, 0.3, 0.3, 0.1) for s in range(400)]
    again = dropouts(0, 7, 256, 0.3, 0.3, 0.1)
    assert again.meta == draws[7].meta and np.array_equal(again.time, draws[7].time)
    assert 0.24 < np.mean([d.meta for d in draws]) < 0.36
    assert 0.28 < np.mean([d.time.mean() for d in draws]) < 0.32
    kept_m = [d.overhead.mean() for d in draws if not d.meta]
    assert all(not d.overhead.any() for d in draws if d.meta) and 0.08 < np.mean(kept_m) < 0.12
    # A rank's slice is the global draw's slice; one rate does not move another's draws.
    assert np.array_equal(draws[3][slice(64, 128)].time, draws[3].time[64:128])
    assert np.array_equal(dropouts(0, 3, 256, 0.9, 0.3, 0.0).time, draws[3].time)
    none = dropouts(0, 3, 256, 0.0, 0.0, 0.0)
    assert not none.meta and not none.time.any() and not none.overhead.any()


def test_patch_jitter_crops_each_image_at_its_own_offset():
    patches = torch.randint(0, 255, (5, 3, 20, 20), dtype=torch.uint8)
    jitter = PatchJitter(16, 2)
    offsets = jitter.sample(step_generator(0, 1, 1), 5)
    assert offsets.min() >= 0 and offsets.max() <= 4
    assert torch.equal(offsets, jitter.sample(step_generator(0, 1, 1), 5))
    out = jitter(patches, offsets)
    assert out.dtype == torch.uint8 and out.shape == (5, 3, 16, 16)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        assert torch.equal(out[i], patches[i, :, dy : dy + 16, dx : dx + 16])


def test_channel_statistics_match_numpy_over_chunks():
    x = np.random.default_rng(0).integers(0, 256, (37, 3, 6, 6), dtype=np.uint8)
    mean, std = channel_statistics(x[s : s + 10] for s in range(0, 37, 10))
    ref = x.astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 2, 3)), atol=1e-12)
    np.testing.assert_allclose(std, ref.std(axis=(0, 2, 3)), atol=1e-9)


def test_a_state_file_of_another_kind_is_a_one_line_data_error(tmp_path):
    from safetensors.torch import save_file

    from omnimap.train.state import read_train_info

    path = tmp_path / "train_state.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": "something else"})
    with pytest.raises(DataError, match="not an omnimap training state"):
        read_train_info(path)
