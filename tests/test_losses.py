"""Contrastive losses: values against hand computation, masking, queue behaviour."""

import math

import pytest
import torch
import torch.nn.functional as F

from omnimap.train.losses import (
    LogitScale,
    TeacherQueue,
    multi_pair_infonce,
    queue_infonce,
    symmetric_infonce,
)


def _unit(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=-1)


def test_queue_infonce_matches_hand_computation():
    s, t, q = _unit(4, 8, 0), _unit(4, 8, 1), _unit(6, 8, 2)
    labels, q_labels = torch.arange(4), torch.arange(10, 16)
    scale = torch.tensor(10.0)
    loss = queue_infonce(s, t, labels, scale, q, q_labels)
    keys = torch.cat([t, q])
    expected = sum(-(torch.log_softmax(scale * s[i] @ keys.T, 0)[i]) for i in range(4)) / 4
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_identical_descriptions_are_not_negatives():
    s, t, q = _unit(3, 8, 3), _unit(3, 8, 4), _unit(4, 8, 5)
    scale = torch.tensor(5.0)
    labels = torch.tensor([7, 8, 9])
    # Queue entry 0 repeats item 1's description: for item 1 it is no negative (the
    # loss row equals the row without that entry); for items 0 and 2 it still is.
    q_labels = torch.tensor([8, 100, 101, 102])
    full = queue_infonce(s, t, labels, scale, q, q_labels)
    rows = [
        queue_infonce(s[i : i + 1], t[i : i + 1], labels[i : i + 1], scale,
                      torch.cat([t[[j for j in range(3) if j != i]], q[1:] if i == 1 else q]),
                      torch.cat([labels[[j for j in range(3) if j != i]], q_labels[1:] if i == 1 else q_labels]))
        for i in range(3)
    ]  # fmt: skip
    assert full.item() == pytest.approx(sum(r.item() for r in rows) / 3, rel=1e-5)
    # ...and relabelling the entry as a real negative changes item 1's loss.
    other = queue_infonce(s, t, labels, scale, q, torch.tensor([55, 100, 101, 102]))
    assert other.item() > full.item()


def test_multi_column_labels_mask_any_shared_id():
    s, t = _unit(3, 8, 6), _unit(3, 8, 7)
    scale = torch.tensor(5.0)
    # rows 0 and 2 share the second column (same facts, different wording)
    labels = torch.tensor([[1, 50], [2, 51], [3, 50]])
    masked = queue_infonce(s, t, labels, scale)
    logits = scale * s @ t.T
    logits[0, 2] = logits[2, 0] = float("-inf")
    assert masked.item() == pytest.approx(F.cross_entropy(logits, torch.arange(3)).item(), rel=1e-6)


def test_perfect_alignment_gives_low_loss():
    t = _unit(16, 32, 8)
    assert queue_infonce(t, t, torch.arange(16), torch.tensor(100.0)).item() < 0.05
    assert queue_infonce(t, t.roll(1, 0), torch.arange(16), torch.tensor(100.0)).item() > 5


def test_symmetric_infonce_is_symmetric_and_masks():
    a, b = _unit(5, 8, 9), _unit(5, 8, 10)
    scale = torch.tensor(7.0)
    assert symmetric_infonce(a, b, scale).item() == pytest.approx(
        symmetric_infonce(b, a, scale).item(), rel=1e-6
    )
    labels = torch.tensor([0, 0, 1, 2, 3])
    assert symmetric_infonce(a, b, scale, labels).item() < symmetric_infonce(a, b, scale).item()


def test_multi_pair_sums_every_pair_with_its_own_scale():
    e = {"audio": _unit(4, 8, 11), "image": _unit(4, 8, 12), "text": _unit(4, 8, 13)}
    scales = {
        "audio|image": torch.tensor(2.0),
        "audio|text": torch.tensor(3.0),
        "image|text": torch.tensor(4.0),
    }
    total = multi_pair_infonce(e, scales)
    expected = sum(
        symmetric_infonce(e[k.split("|")[0]], e[k.split("|")[1]], v) for k, v in scales.items()
    )
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)


def test_logit_scale_starts_at_temperature_and_is_clamped():
    ls = LogitScale(0.07)
    assert ls().item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        ls.log_scale.fill_(10.0)
    assert ls().item() == pytest.approx(100.0, rel=1e-5)


def test_queue_is_fifo_and_sized_by_batch():
    with pytest.raises(ValueError, match="multiple"):
        TeacherQueue(10, 4, batch_size=3)
    q = TeacherQueue(4, 2, batch_size=2)
    q.fill(torch.ones(3, 2), torch.tensor([1, 2, 3]))
    assert q.current()[1].tolist() == [1, 2, 3]
    q.push(torch.zeros(2, 2), torch.tensor([4, 5]))
    assert q.labels.tolist() == [5, 2, 3, 4]  # wrapped around, oldest replaced
    state = q.state_dict()
    r = TeacherQueue(4, 2, batch_size=2)
    r.load_state_dict(state)
    assert r.labels.tolist() == q.labels.tolist() and r.ptr == q.ptr and r.filled == 4


def test_loss_gradient_flows_to_student_only():
    s = _unit(4, 8, 14).requires_grad_(True)
    t = _unit(4, 8, 15)
    queue_infonce(s, t, torch.arange(4), torch.tensor(math.e)).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_an_empty_queue_leaves_in_batch_negatives_only():
    q = TeacherQueue(0, 2, batch_size=2)
    q.fill(torch.ones(3, 2), torch.tensor([1, 2, 3]))
    q.push(torch.zeros(2, 2), torch.tensor([4, 5]))
    vectors, labels = q.current()
    assert vectors.shape == (0, 2) and labels.numel() == 0 and q.ptr == 0


def test_paired_loss_is_the_sum_of_per_pair_infonce_with_their_temperatures():
    from omnimap.train.losses import PairScales, PairTargets, paired_queue_infonce

    s, audio, text, q = _unit(5, 8, 20), _unit(5, 8, 21), _unit(5, 8, 22), _unit(3, 8, 23)
    labels, q_labels = torch.arange(5), torch.arange(10, 13)
    scales = PairScales(["overhead|audio", "overhead|text"], init_temperature=0.07)
    with torch.no_grad():
        scales.scales["overhead|text"].log_scale.fill_(math.log(1 / 0.2))
    t = scales()
    assert t["overhead|audio"].item() == pytest.approx(1 / 0.07, rel=1e-5)
    assert t["overhead|text"].item() == pytest.approx(5.0, rel=1e-5)
    has = torch.tensor([True, False, True, True, False])  # clips with a caption
    pairs = {"overhead|audio": PairTargets(audio, labels, None, q, q_labels),
             "overhead|text": PairTargets(text, labels, has)}  # fmt: skip
    total, each = paired_queue_infonce(s, pairs, t)
    audio_loss = queue_infonce(s, audio, labels, t["overhead|audio"], q, q_labels)
    text_loss = queue_infonce(s[has], text[has], labels[has], t["overhead|text"])
    assert each["overhead|audio"].item() == pytest.approx(audio_loss.item(), rel=1e-6)
    assert each["overhead|text"].item() == pytest.approx(text_loss.item(), rel=1e-6)
    assert total.item() == pytest.approx(audio_loss.item() + text_loss.item(), rel=1e-6)
    # by hand: the text pair's rows are the captioned ones, its temperature 0.2
    rows = has.nonzero()[:, 0]
    by_hand = sum(-torch.log_softmax(5.0 * s[i] @ text[rows].T, 0)[j] for j, i in enumerate(rows)) / 3
    assert text_loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    # each temperature gets its own gradient; a pair with no valid row adds 0 x its scale
    total.backward()
    grads = [scales.scales[n].log_scale.grad for n in scales.names]
    assert all(g is not None and g.item() != 0 for g in grads) and grads[0] != grads[1]
    none = {"overhead|text": PairTargets(text, labels, torch.zeros(5, dtype=torch.bool))}
    zero, each = paired_queue_infonce(s, none, scales())
    assert zero.item() == 0.0 and each == {}
    # the weight scales the pair's mean (the DDP correction)
    half = {"overhead|audio": PairTargets(audio, labels, None, q, q_labels, weight=0.5)}
    assert paired_queue_infonce(s, half, scales())[0].item() == pytest.approx(0.5 * audio_loss.item(), rel=1e-6)


def test_pair_scales_refuse_repeated_or_no_names():
    from omnimap.train.losses import PairScales

    for names in ([], ["a", "a"]):
        with pytest.raises(ValueError, match="distinct"):
            PairScales(names)
