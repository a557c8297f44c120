"""Frozen text teachers from Hugging Face transformers (local dir or hub name).

Sentence-transformers models such as all-MiniLM-L6-v2 are used the way they were
trained: token embeddings mean-pooled over the attention mask, then L2-normalised.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from omnimap.core.digest import hasher
from omnimap.core.errors import DataError
from omnimap.teachers.base import Teacher

TEXT_BATCH = 256  # sentences per forward pass
MAX_TOKENS = 128


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_pretrained(loader, source: str):
    """``loader.from_pretrained(source)``: local directories never touch a hub, and a
    failure is one line naming the model."""
    kwargs = {"local_files_only": True} if Path(source).is_dir() else {}
    try:
        return loader.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot load model {source!r}: {first_line(exc)}") from None


@contextlib.contextmanager
def _no_loading_bar() -> Iterator[None]:
    """Hide transformers' "Loading weights" bar (a frame of noise on every start) but
    keep the hub's download bars, which a first use needs."""
    import huggingface_hub.utils as hub
    from transformers.utils import logging as hf_logging

    shown, downloads = hf_logging.is_progress_bar_enabled(), not hub.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    if downloads:
        hub.enable_progress_bars()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


class TextTeacher(Teacher):
    """A transformers encoder with mean pooling, loaded lazily on first use."""

    kind = "text"
    modalities = ("text",)

    def __init__(self, name: str, source: str | os.PathLike | None = None,
                 licence: str = "see the model's card", batch_size: int = TEXT_BATCH):  # fmt: skip
        super().__init__(name)
        self.source = str(source if source is not None else name)
        self.licence = licence
        self.batch_size = batch_size

    @property
    def is_local(self) -> bool:
        return Path(self.source).is_dir()

    @cached_property
    def _model(self):
        # transformers is imported on first use: it costs seconds a CLI start should not.
        from transformers import AutoModel, AutoTokenizer

        tokenizer = load_pretrained(AutoTokenizer, self.source)
        with _no_loading_bar():
            model = load_pretrained(AutoModel, self.source).eval()
        return tokenizer, model

    @cached_property
    def dim(self) -> int:
        return int(self._model[1].config.hidden_size)

    @cached_property
    def key(self) -> str:
        """A digest of the local weight and tokenizer files, else the hub name."""
        if not self.is_local:
            return "hub:" + self.source
        h = hasher(64)
        root = Path(self.source)
        for f in sorted(root.glob("*.safetensors")) + sorted(root.glob("tokenizer*.json")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
        return "local:" + h.hexdigest()

    def _embed(self, modality: str, items: Sequence, progress: bool) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        texts = [str(t) for t in items]
        tokenizer, model = self._model
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Sorted by length so each batch pads little; the order is restored on output.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        starts = range(0, len(texts), self.batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc="teacher", unit="batch", disable=not progress):
                idx = order[start : start + self.batch_size]
                batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                  max_length=MAX_TOKENS, return_tensors="pt")  # fmt: skip
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
                out[idx] = torch.nn.functional.normalize(pooled, dim=-1).float().numpy()
        return out
