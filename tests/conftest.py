"""Test set-up: no network, caches in a temp dir, no progress bars."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TQDM_DISABLE"] = "1"

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("omnimap-cache")
    old = os.environ.get("OMNIMAP_CACHE_DIR")
    os.environ["OMNIMAP_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("OMNIMAP_CACHE_DIR", None)
    else:
        os.environ["OMNIMAP_CACHE_DIR"] = old


TINY_WORDS = (
    "a an the of in on at and with sand dunes desert forest jungle ice snow sea ocean water city "
    "night day morning winter summer fields crops mountains hills grass trees town village lights"
).split()


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory):
    """A randomly initialised tiny BERT + WordPiece tokenizer, saved like a hub model,
    so tests exercise the real transformers loading code without any download."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny-teacher")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_teacher_dir):
    """A tiny random student (dim 16) whose teacher is the tiny BERT."""
    import torch

    from omnimap.models.checkpoint import save_checkpoint
    from omnimap.models.student import build_student

    arch = {
        "dim": 16,
        "overhead": {"type": "patch_cnn", "patch_size": 16, "channels": [8, 16], "hidden": 32},
        "dynamic": {"inputs": 12, "hidden": 8},
    }
    torch.manual_seed(1)
    student = build_student(arch)
    config = {"name": "tiny", **arch, "teacher": {"name": str(tiny_teacher_dir), "dim": 16},
              "imagery": {"name": "bmng", "patch_size": 16}}  # fmt: skip
    path = tmp_path_factory.mktemp("tiny-model")
    save_checkpoint(student, config, path)
    return path
