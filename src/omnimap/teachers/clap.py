"""The frozen CLAP teacher (audio and text in one space), e.g. laion/clap-htsat-unfused.

Loaded with transformers' ``ClapModel``, ``ClapFeatureExtractor`` and the model's
tokenizer from a hub name or a local directory. A clip of any rate and length is
resampled to the extractor's rate and cut into windows of its length (10 s for the
LAION models; the last one padded by the extractor); the clip's vector is the mean of
its unit window vectors, made unit. No CLAP weights ship offline: the tests build a
tiny random CLAP (``make_tiny_clap``) and load it through this same code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from omnimap.core.digest import hasher
from omnimap.media.audio import Waveform, windows
from omnimap.teachers.base import Teacher
from omnimap.teachers.text import load_pretrained
from omnimap.teachers.tiny import _byte_chars

CLAP_BATCH = 16  # windows or texts per forward pass
ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


def _features(output) -> torch.Tensor:
    """transformers 5 returns a model output from get_*_features; 4 a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClapTeacher(Teacher):
    """A frozen ``ClapModel``, loaded lazily on first use."""

    kind = "clap"
    modalities = ("audio", "text")
    licence = "see the model's card (laion/clap-htsat-unfused: Apache-2.0)"

    def __init__(self, name_or_path: str | Path, batch_size: int = CLAP_BATCH):
        super().__init__(str(name_or_path))
        self.source = str(name_or_path)
        self.batch_size = batch_size

    @cached_property
    def model(self):
        from transformers import ClapModel  # on first use: transformers costs seconds

        return load_pretrained(ClapModel, self.source).eval().requires_grad_(False)

    @cached_property
    def extractor(self):
        from transformers import ClapFeatureExtractor

        return load_pretrained(ClapFeatureExtractor, self.source)

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        return load_pretrained(AutoTokenizer, self.source)

    @property
    def sample_rate(self) -> int:
        return int(self.extractor.sampling_rate)

    @property
    def window_seconds(self) -> float:
        return float(self.extractor.nb_max_samples) / self.sample_rate

    @cached_property
    def dim(self) -> int:
        return int(self.model.config.projection_dim)

    @cached_property
    def key(self) -> str:
        h = hasher()
        for name, tensor in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().contiguous().view(-1).view(torch.uint8).numpy())
        spec = {k: v for k, v in self.extractor.to_dict().items() if k != "mel_filters"}
        spec = {k: v for k, v in spec.items() if not k.startswith("mel_filters")}
        h.update(json.dumps(spec, sort_keys=True, default=str).encode())
        h.update(json.dumps(self.tokenizer.get_vocab(), sort_keys=True).encode())
        return h.hexdigest()

    @torch.inference_mode()
    def _embed(self, modality: str, items: Sequence, progress: bool) -> np.ndarray:
        if modality == "text":
            out = []
            texts = [str(t) for t in items]
            for s in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(texts[s : s + self.batch_size], padding=True,
                                       truncation=True, return_tensors="pt")  # fmt: skip
                out.append(_features(self.model.get_text_features(**batch)))
            return torch.nn.functional.normalize(torch.cat(out), dim=-1).numpy().astype(np.float32)
        return np.stack([self._clip(clip) for clip in items])

    def _clip(self, clip: Waveform) -> np.ndarray:
        if not isinstance(clip, Waveform):
            raise TypeError(
                f"audio items are omnimap.media.audio.Waveform, got {type(clip).__name__}"
            )
        wins = windows(clip.resample(self.sample_rate), self.window_seconds)
        vecs = []
        for s in range(0, len(wins), self.batch_size):
            feats = self.extractor(list(wins[s : s + self.batch_size]), sampling_rate=self.sample_rate,
                                   return_tensors="pt")  # fmt: skip
            vecs.append(_features(self.model.get_audio_features(**feats)))
        unit = torch.nn.functional.normalize(torch.cat(vecs), dim=-1).mean(0)
        return torch.nn.functional.normalize(unit, dim=0).numpy().astype(np.float32)


def make_tiny_clap(out_dir: str | Path, seed: int = 0, dim: int = 16) -> Path:
    """A randomly initialised tiny CLAP (2 s windows, 16 mel bins), saved with its
    feature extractor and a byte-level RoBERTa tokenizer like a hub model."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    vocab = {tok: i for i, tok in enumerate([*ROBERTA_SPECIALS, *chars])}
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tok = {"tokenizer_class": "RobertaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
           "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>",
           "model_max_length": 64}  # fmt: skip
    (out / "tokenizer_config.json").write_text(json.dumps(tok), encoding="utf-8")
    audio = {"depths": [1, 1], "num_attention_heads": [1, 2], "patch_embeds_hidden_size": 8,
             "hidden_size": 16, "window_size": 8, "spec_size": 64, "num_mel_bins": 16,
             "patch_size": 4, "patch_stride": [4, 4], "enable_fusion": False, "projection_dim": dim}  # fmt: skip
    text = {"vocab_size": len(vocab), "hidden_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 80,
            "projection_dim": dim, "type_vocab_size": 1, "pad_token_id": 1, "bos_token_id": 0,
            "eos_token_id": 2}  # fmt: skip
    torch.manual_seed(seed)
    ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=dim)).save_pretrained(
        out
    )
    ClapFeatureExtractor(feature_size=16, sampling_rate=48_000, hop_length=480, max_length_s=2,
                         fft_window_size=1024, padding="repeatpad",
                         truncation="rand_trunc").save_pretrained(out)  # fmt: skip
    return out
