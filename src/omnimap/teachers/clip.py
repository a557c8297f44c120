"""The frozen CLIP teacher: its image tower embeds ground photos, its text tower queries.

Loaded with transformers from a hub name (e.g. openai/clip-vit-base-patch32) or a
local directory. Image preprocessing follows the model's ``preprocessor_config.json``
(resize the shortest edge, centre crop, normalise) but is done here with Pillow and
torch: transformers 5's ``CLIPImageProcessor`` needs torchvision, which is not
usable beside the local torch build.

Keys identify the exact weights (a digest of the tower's tensors plus whatever else
changes the vectors: preprocessing, vocabulary), so cached teacher embeddings are
never reused across teachers and never recomputed for the same one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from omnimap.core.digest import hasher
from omnimap.teachers.base import Teacher
from omnimap.teachers.text import load_pretrained

CLIP_BATCH = 64  # images or texts per forward pass
# OpenAI CLIP's preprocessing, used when a model directory has no preprocessor config.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Preprocessing:
    resize: int  # shortest edge after resizing
    crop: int  # square centre crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def pixels(self, image: Image.Image | np.ndarray) -> torch.Tensor:
        """(3, crop, crop) float32 normalised pixels of one RGB image (PIL or HWC uint8)."""
        im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
        im = im.convert("RGB")
        w, h = im.size
        short = min(w, h)
        # As transformers: the long side is int(resize * long / short).
        size = (
            (self.resize, int(self.resize * h / w))
            if w == short
            else (int(self.resize * w / h), self.resize)
        )
        im = im.resize(size, Image.BICUBIC)
        left, top = (size[0] - self.crop) // 2, (size[1] - self.crop) // 2
        im = im.crop((left, top, left + self.crop, top + self.crop))
        x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        return (x - mean) / torch.tensor(self.std).view(3, 1, 1)

    def to_json(self) -> dict:
        return {
            "resize": self.resize,
            "crop": self.crop,
            "mean": list(self.mean),
            "std": list(self.std),
        }


def _side(value, key: str, default: int) -> int:
    """A size from a preprocessor config: {"shortest_edge": 224}, {"height": 224, ...}
    or, in older configs, a bare 224."""
    if isinstance(value, dict):
        return int(value.get(key, default))
    return int(value) if isinstance(value, int | float) else default


def _tensor_digest(state: dict[str, torch.Tensor], extra: str) -> str:
    h = hasher()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    h.update(extra.encode())
    return h.hexdigest()


class CLIPTeacher(Teacher):
    """A frozen ``CLIPModel``, loaded lazily on first use: photos and text in one space."""

    kind = "clip"
    modalities = ("image", "text")
    licence = "see the model's card (OpenAI CLIP: MIT)"

    def __init__(self, name_or_path: str | Path, device: str | torch.device = "cpu",
                 batch_size: int = CLIP_BATCH):  # fmt: skip
        super().__init__(str(name_or_path))
        self.source = str(name_or_path)
        self.device = torch.device(device)
        self.batch_size = batch_size

    @property
    def is_local(self) -> bool:
        return Path(self.source).is_dir()

    def _kwargs(self) -> dict:
        return {"local_files_only": True} if self.is_local else {}

    @cached_property
    def model(self):
        from transformers import CLIPModel  # on first use: transformers costs seconds

        model = load_pretrained(CLIPModel, self.source)
        model.eval().requires_grad_(False)
        return model.to(self.device)

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        return load_pretrained(AutoTokenizer, self.source)

    @cached_property
    def preprocessing(self) -> Preprocessing:
        size = int(self.model.config.vision_config.image_size)
        spec = self._preprocessor_config()
        resize = _side(spec.get("size"), "shortest_edge", size)
        crop = _side(spec.get("crop_size"), "height", size)
        mean, std = spec.get("image_mean", CLIP_MEAN), spec.get("image_std", CLIP_STD)
        return Preprocessing(resize, crop, tuple(map(float, mean)), tuple(map(float, std)))

    def _preprocessor_config(self) -> dict:
        from transformers.utils import cached_file

        try:
            path = cached_file(self.source, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False,
                               **self._kwargs())  # fmt: skip
        except OSError:
            path = None
        return json.loads(Path(path).read_text(encoding="utf-8")) if path else {}

    def to(self, device: str | torch.device) -> CLIPTeacher:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    @property
    def dim(self) -> int:
        return int(self.model.config.projection_dim)

    @property
    def vision_config(self) -> dict:
        """The vision tower's architecture as plain JSON (enough to rebuild it)."""
        return self.model.config.vision_config.to_diff_dict()

    def vision_state(self) -> dict[str, torch.Tensor]:
        """Weights of the vision tower and its projection, named as in
        ``CLIPVisionModelWithProjection`` (so a student can start from them)."""
        return {
            k: v
            for k, v in self.model.state_dict().items()
            if k.startswith(("vision_model.", "visual_projection."))
        }

    @cached_property
    def image_key(self) -> str:
        extra = json.dumps(self.preprocessing.to_json(), sort_keys=True)
        return "clip-image-" + _tensor_digest(self.vision_state(), extra)

    @cached_property
    def text_key(self) -> str:
        text = {
            k: v
            for k, v in self.model.state_dict().items()
            if k.startswith(("text_model.", "text_projection."))
        }
        vocab = json.dumps(sorted(self.tokenizer.get_vocab().items()))
        return "clip-text-" + _tensor_digest(text, vocab)

    @cached_property
    def key(self) -> str:
        return f"{self.image_key}|{self.text_key}"

    def modality_key(self, modality: str) -> str:
        return self.image_key if modality == "image" else self.text_key

    def to_config(self) -> dict:
        """What a student's config records about its teacher (for queries at map time)."""
        return {"kind": self.kind, "name": self.source, "key": self.text_key,
                "image_key": self.image_key, "dim": self.dim}  # fmt: skip

    def _embed(self, modality: str, items: Sequence, progress: bool) -> np.ndarray:
        if modality == "image":
            return self.embed_images(items, progress=progress)
        return self.embed_texts([str(t) for t in items], progress=progress)

    # -- embeddings ---------------------------------------------------------------

    @torch.inference_mode()
    def pixel_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, dim) projected image features, not normalised (``get_image_features``)."""
        m = self.model
        out = m.get_image_features(pixel_values=pixels.to(self.device, m.dtype))
        # transformers 5 returns the model output with the projection in pooler_output,
        # transformers 4 the tensor itself.
        return (out if isinstance(out, torch.Tensor) else out.pooler_output).float()

    @torch.inference_mode()
    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, dim) unit vectors on the teacher's device from preprocessed pixels."""
        return torch.nn.functional.normalize(self.pixel_features(pixels), dim=-1)

    def _image_batches(self, images: Sequence, features, progress: bool) -> np.ndarray:
        from tqdm.auto import tqdm

        out = np.empty((len(images), self.dim), dtype=np.float32)
        for s in tqdm(
            range(0, len(images), self.batch_size),
            desc="teacher",
            unit="batch",
            disable=not progress,
        ):
            batch = torch.stack(
                [self.preprocessing.pixels(im) for im in images[s : s + self.batch_size]]
            )
            out[s : s + len(batch)] = features(batch).cpu().numpy()
        return out

    def embed_images(
        self, images: Sequence[Image.Image | np.ndarray], progress: bool = False
    ) -> np.ndarray:
        """(N, dim) float32 unit vectors of RGB images (PIL, or HWC uint8 arrays)."""
        return self._image_batches(images, self.embed_pixels, progress)

    def image_features(
        self, images: Sequence[Image.Image | np.ndarray], progress: bool = False
    ) -> np.ndarray:
        """(N, dim) float32 raw image features (not normalised; what GeoCLIP's image head
        takes). Their unit vectors are :meth:`embed_images`."""
        return self._image_batches(images, self.pixel_features, progress)

    def embed_patches(self, patches: np.ndarray, progress: bool = False) -> np.ndarray:
        """Embed uint8 (N, 3, P, P) patches, e.g. overhead imagery for the plain-CLIP baseline."""
        return self.embed_images(list(np.asarray(patches).transpose(0, 2, 3, 1)), progress=progress)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        from tqdm.auto import tqdm

        m, tok = self.model, self.tokenizer
        max_length = min(
            int(tok.model_max_length), int(m.config.text_config.max_position_embeddings)
        )
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for s in tqdm(
            range(0, len(texts), self.batch_size), desc="text", unit="batch", disable=not progress
        ):
            batch = tok(list(texts[s : s + self.batch_size]), padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt").to(self.device)  # fmt: skip
            pooled = m.text_model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).pooler_output
            vectors = torch.nn.functional.normalize(m.text_projection(pooled).float(), dim=-1)
            out[s : s + len(vectors)] = vectors.cpu().numpy()
        return out
