"""A tiny randomly initialised CLIP, saved like a hub model.

Tests, the example and the CPU benchmark load it back through the same code as
openai/clip-vit-base-patch32, so no download is ever needed. The tokenizer files are
those of a real ``CLIPTokenizer`` (byte-level BPE: vocab.json + merges.txt) with a
character vocabulary and no merges; written as files, they load in transformers 4 and 5.
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIALS = ("<|startoftext|>", "<|endoftext|>")


def _byte_chars() -> list[str]:
    """GPT-2/CLIP's printable stand-ins for the 256 byte values."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    keep += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_tokenizer(out: Path) -> dict[str, int]:
    """CLIP tokenizer files with a character vocabulary; returns the vocabulary."""
    chars = _byte_chars()
    vocab = {tok: i for i, tok in enumerate([*chars, *(c + "</w>" for c in chars), *SPECIALS])}
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    config = {"tokenizer_class": "CLIPTokenizer", "bos_token": SPECIALS[0], "eos_token": SPECIALS[1],
              "pad_token": SPECIALS[1], "unk_token": SPECIALS[1], "model_max_length": 77}  # fmt: skip
    (out / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return vocab


def save_clip(out_dir: str | Path, text: dict, vision: dict, dim: int, seed: int = 0) -> Path:
    """A randomly initialised ``CLIPModel`` of the given towers, saved with tokenizer and
    preprocessor config like a hub model. ``text`` needs no token ids or vocabulary size:
    they come from the tokenizer written here."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = write_tokenizer(out)
    eos = vocab[SPECIALS[1]]
    text = {**text, "vocab_size": max(len(vocab), text.get("vocab_size", 0)), "bos_token_id": vocab[SPECIALS[0]],
            "eos_token_id": eos, "pad_token_id": eos}  # fmt: skip
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=dim)
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(out)
    size = int(config.vision_config.image_size)
    # What CLIPImageProcessor.save_pretrained writes, without needing torchvision.
    preprocessor = {
        "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": size},
        "do_center_crop": True, "crop_size": {"height": size, "width": size},
        "do_normalize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "do_rescale": True,
        "rescale_factor": 1 / 255,
    }  # fmt: skip
    (out / "preprocessor_config.json").write_text(
        json.dumps(preprocessor, indent=2), encoding="utf-8"
    )
    return out


def make_tiny_clip(
    out_dir: str | Path, image_size: int = 32, patch: int = 8, width: int = 32, dim: int = 32,
    layers: int = 2, seed: int = 0,
) -> Path:  # fmt: skip
    """A tiny CLIP (both towers ``layers`` deep, ``width`` wide) saved in ``out_dir``."""
    heads = max(1, width // 16)
    tower = {"hidden_size": width, "intermediate_size": 2 * width, "num_hidden_layers": layers,
             "num_attention_heads": heads}  # fmt: skip
    text = {**tower, "max_position_embeddings": 77}
    return save_clip(
        out_dir, text, {**tower, "image_size": image_size, "patch_size": patch}, dim, seed
    )
