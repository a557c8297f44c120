"""GeoCLIP: "where was this photo taken?" by retrieval over a GPS gallery.

GeoCLIP (Vivanco Cepeda, Nayak & Shah, NeurIPS 2023) aligns CLIP image features with a
location encoder: GPS -> Equal Earth projection -> random Fourier features at three
scales (sigma 2^0, 2^4, 2^8) -> one MLP branch per scale -> branch outputs summed into a
512-d embedding. An image is located by cosine similarity against a gallery of 100k GPS
points, softmax-ed with the learned logit scale.

The weights, logit scale and gallery come from the ``geoclip`` PyPI package (MIT
licence, (c) 2024 Vicente Vivanco), read here as plain files: the modules below are our
own, written from the paper and the shapes of the shipped tensors. The package itself is
never imported (its ``__init__`` imports torchvision, which cannot sit beside our torch),
and its ``.pth`` pickles are read only with ``torch.load(weights_only=True)``.

Coordinates are (lon, lat) in degrees everywhere here; the package and its CSV use
(lat, lon), swapped on the way in.

The image side needs CLIP ViT-L/14 image features (768-d, ``get_image_features``,
not normalised), which come from a model hub (``openai/clip-vit-large-patch14``,
downloaded on first use) or a local folder: :meth:`GeoClip.embed_photos` takes photos
through them (Pillow preprocessing from the model's preprocessor config, no
torchvision) and :meth:`GeoClip.image_head`; :meth:`GeoClip.predict` takes any 512-d
query.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
import xxhash
from torch import nn
from tqdm import tqdm

from omnimap.core.errors import DataError, InputError
from omnimap.core.store import ArrayStore
from omnimap.resources.packages import package_dir, require_file
from omnimap.teachers.clip import CLIPTeacher
from omnimap.teachers.registry import get_teacher

log = logging.getLogger(__name__)

# Exact pin: the gallery cache and the tests' reference numbers belong to these very
# weights; --no-deps because the package's own requirements pull torchvision.
PIP_NAME = "geoclip==1.3.0"
INSTALL = "pip install --no-deps geoclip==1.3.0"

DIM = 512
IMAGE_FEATURES = 768  # CLIP ViT-L/14 projection width
CLIP_MODEL = "openai/clip-vit-large-patch14"  # the image tower GeoCLIP's head was trained on
SIGMAS = (2.0**0, 2.0**4, 2.0**8)
RFF_FEATURES = 256  # frequencies per branch: cos + sin -> 512 inputs
HIDDEN = 1024
GALLERY_SIZE = 100_000
CACHE_FORMAT = "omnimap.geoclip-gallery/1"

# Equal Earth projection (Savric, Patterson & Jenny 2018), unit sphere.
EE_A1, EE_A2, EE_A3, EE_A4 = 1.340264, -0.081106, 0.000893, 0.003796
EE_M = math.sqrt(3.0) / 2.0
# GeoCLIP's scale factor: x * SF / 180 maps the projection's x range, +-2*sqrt(3)*pi/(3*A1),
# onto +-1 (SF = 540*A1 / (2*sqrt(3)*pi) = 66.50336). The weights were trained with it.
GEOCLIP_SF = 66.50336


def equal_earth(lon: torch.Tensor, lat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal Earth x, y (unit sphere) of lon/lat in degrees, in the inputs' dtype."""
    lam, phi = torch.deg2rad(lon), torch.deg2rad(lat)
    theta = torch.asin(EE_M * torch.sin(phi))
    t2 = theta * theta
    t6 = t2 * t2 * t2
    x = (2.0 * math.sqrt(3.0) * lam * torch.cos(theta)) / (
        3.0 * (9.0 * EE_A4 * t6 * t2 + 7.0 * EE_A3 * t6 + 3.0 * EE_A2 * t2 + EE_A1)
    )
    y = theta * (EE_A1 + EE_A2 * t2 + t6 * (EE_A3 + EE_A4 * t2))
    return x, y


def project(lonlat: torch.Tensor) -> torch.Tensor:
    """(N, 2) lon/lat degrees -> (N, 2) GeoCLIP input: Equal Earth scaled so |x| <= 1."""
    x, y = equal_earth(lonlat[:, 0], lonlat[:, 1])
    return torch.stack((x, y), dim=1) * (GEOCLIP_SF / 180.0)


class FourierFeatures(nn.Module):
    """Random Fourier features [cos 2*pi*Bv, sin 2*pi*Bv] with a fixed B (features, 2).

    B was drawn once (N(0, sigma^2)) before training and ships in the weights, so it is
    a buffer filled by load_state_dict, not re-sampled: a fresh draw would be a new model.
    """

    def __init__(self, features: int = RFF_FEATURES, inputs: int = 2):
        super().__init__()
        self.register_buffer("b", torch.zeros(features, inputs))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        # Phases reach ~1e4 rad at sigma 256: float64 here keeps them exact to ~1e-12
        # (float32 errs by ~1e-3 rad); cheap next to the MLPs, which stay float32.
        phase = (2.0 * math.pi * v.double()) @ self.b.double().T
        return torch.cat((torch.cos(phase), torch.sin(phase)), dim=-1).to(self.b.dtype)


class LocationBranch(nn.Module):
    """One scale: Fourier features -> 3 x (Linear 1024 + ReLU) -> Linear 512.

    Attribute names and Sequential positions follow the shipped state dict's keys
    (``capsule.0.b``, ``capsule.1.weight`` ... ``head.0.weight``) so it loads strictly.
    """

    def __init__(self):
        super().__init__()
        self.capsule = nn.Sequential(
            FourierFeatures(),
            nn.Linear(2 * RFF_FEATURES, HIDDEN), nn.ReLU(),
            nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
            nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Linear(HIDDEN, DIM))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.head(self.capsule(v))


class LocationEncoder(nn.Module):
    """(N, 2) lon/lat degrees -> (N, 512) raw (unnormalised) GeoCLIP location embedding.

    The projection and Fourier phases run in float64, the MLPs in float32: within 4e-8
    of an all-float64 pass, where the package's all-float32 pass errs by ~2e-5.
    """

    def __init__(self, branches: int = len(SIGMAS)):
        super().__init__()
        for i in range(branches):  # keys LocEnc0..2, as shipped
            self.add_module(f"LocEnc{i}", LocationBranch())

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        v = project(lonlat.double())  # float64: see FourierFeatures.forward
        out = None
        for branch in self.children():
            y = branch(v)
            out = y if out is None else out + y
        return out


def photo_clip(source: str | Path | CLIPTeacher | None = None) -> CLIPTeacher:
    """The CLIP whose image features feed GeoCLIP's head (ViT-L/14 by default; a hub
    name, a local folder or a CLIPTeacher); InputError unless its features are 768-d."""
    clip = (
        source
        if isinstance(source, CLIPTeacher)
        else get_teacher(str(source or CLIP_MODEL), "clip", cached=False)
    )
    if clip.dim != IMAGE_FEATURES:
        raise InputError(
            f"CLIP model {clip.name!r} gives {clip.dim}-d image features; GeoCLIP's image head "
            f"takes {IMAGE_FEATURES}-d ones (CLIP ViT-L/14, {CLIP_MODEL})"
        )
    return clip


def image_head_module() -> nn.Sequential:
    """GeoCLIP's trainable image side: CLIP ViT-L/14 features 768 -> 768 -> ReLU -> 512."""
    return nn.Sequential(nn.Linear(IMAGE_FEATURES, IMAGE_FEATURES), nn.ReLU(),
                         nn.Linear(IMAGE_FEATURES, DIM))  # fmt: skip


@dataclass(frozen=True)
class GeoClipFiles:
    """The package's files (its ``geoclip/model`` folder)."""

    root: Path

    @property
    def location_weights(self) -> Path:
        return self.root / "weights" / "location_encoder_weights.pth"

    @property
    def image_weights(self) -> Path:
        return self.root / "weights" / "image_encoder_mlp_weights.pth"

    @property
    def logit_scale(self) -> Path:
        return self.root / "weights" / "logit_scale_weights.pth"

    @property
    def gallery_csv(self) -> Path:
        return self.root / "gps_gallery" / "coordinates_100K.csv"

    def check(self) -> GeoClipFiles:
        for path in (self.location_weights, self.image_weights, self.logit_scale, self.gallery_csv):
            require_file(path, PIP_NAME)
        return self


def package_files() -> GeoClipFiles:
    """Locate the installed package's files without importing it."""
    try:
        base = package_dir("geoclip", PIP_NAME)
    except DataError:
        raise DataError(f"GeoCLIP weights are not installed; run: {INSTALL}") from None
    return GeoClipFiles(base / "model").check()


def _digest(*paths: Path) -> str:
    h = xxhash.xxh3_128()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _load_state(path: Path) -> dict[str, torch.Tensor] | torch.Tensor:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code
    except Exception as exc:  # a corrupt or non-tensor pickle: one line for the user
        raise DataError(
            f"cannot read {path.name} ({type(exc).__name__}); reinstall: {INSTALL}"
        ) from None


def _load_strict(module: nn.Module, path: Path) -> None:
    state = _load_state(path)
    if not isinstance(state, dict):
        raise DataError(f"{path.name} is not a state dict; reinstall: {INSTALL}")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise DataError(f"{path.name} does not fit GeoCLIP's layers: {first}") from None


def read_gallery_csv(path: Path, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The package's GPS gallery as float64 (lon, lat), first ``size`` rows."""
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().strip()
        if header != "LAT,LON":
            raise DataError(f"{path.name}: expected header LAT,LON, got {header[:40]!r}")
        data = np.loadtxt(fh, delimiter=",", dtype=np.float64, ndmin=2, max_rows=size)
    if data.shape[1] != 2 or not np.isfinite(data).all():
        raise DataError(f"{path.name}: expected finite LAT,LON rows")
    return data[:, 1].copy(), data[:, 0].copy()


@dataclass(frozen=True)
class Prediction:
    """Top-k gallery points per query, best first: (Q, k) arrays, or (k,) for one query."""

    lon: np.ndarray
    lat: np.ndarray
    prob: np.ndarray  # softmax over the whole gallery, so a row sums to <= 1
    index: np.ndarray  # row in the gallery


@dataclass(frozen=True)
class Gallery:
    """GPS points (lon, lat float64) with unit-norm float32 GeoCLIP embeddings (N, 512)."""

    lon: np.ndarray
    lat: np.ndarray
    embeddings: np.ndarray
    key: str  # weights + gallery digest and size

    def __len__(self) -> int:
        return len(self.lon)

    def predict(
        self, query: np.ndarray, k: int, logit_scale: float, chunk: int = 256
    ) -> Prediction:
        """Softmax(logit_scale * cos) over the gallery, top ``k`` per query."""
        q = np.asarray(query, dtype=np.float32)
        single = q.ndim == 1
        q = q[None] if single else q
        if q.ndim != 2 or q.shape[1] != DIM:
            raise InputError(f"query must be (512,) or (N, 512), got {tuple(np.shape(query))}")
        if not np.isfinite(q).all():
            raise InputError("query has non-finite values")
        if not 1 <= k <= len(self):
            raise InputError(f"k must be between 1 and {len(self)}, got {k}")
        gallery = torch.from_numpy(self.embeddings)
        probs, index = [], []
        with torch.inference_mode():
            for start in range(0, len(q), chunk):  # bounds the (chunk, N) logits in memory
                qt = nn.functional.normalize(torch.from_numpy(q[start : start + chunk]), dim=1)
                logits = logit_scale * (qt @ gallery.T)
                top = torch.topk(torch.softmax(logits, dim=1), k, dim=1)
                probs.append(top.values.numpy())
                index.append(top.indices.numpy())
        prob, idx = np.concatenate(probs), np.concatenate(index)
        if single:
            prob, idx = prob[0], idx[0]
        return Prediction(lon=self.lon[idx], lat=self.lat[idx], prob=prob, index=idx)


class GeoClip:
    """GeoCLIP's location encoder, image head and logit scale, with a cached GPS gallery."""

    def __init__(
        self,
        location_encoder: LocationEncoder,
        image_mlp: nn.Sequential,
        logit_scale: float,
        files: GeoClipFiles,
        digest: str,
    ):
        self.location_encoder = location_encoder.eval()
        self.image_mlp = image_mlp.eval()
        self.logit_scale = logit_scale  # exp of the shipped log scale (about 39.7)
        self.files = files
        self.digest = digest  # location weights + gallery CSV
        self._galleries: dict[int, Gallery] = {}

    @classmethod
    def load(cls) -> GeoClip:
        """The installed package's model, loaded once per process."""
        return _load_cached(package_files().root)

    @classmethod
    def from_files(cls, files: GeoClipFiles) -> GeoClip:
        """Load (not memoised) from a folder laid out like the package's ``geoclip/model``."""
        files.check()
        encoder = LocationEncoder()
        _load_strict(encoder, files.location_weights)
        head = image_head_module()
        _load_strict(head, files.image_weights)
        scale = _load_state(files.logit_scale)
        if not isinstance(scale, torch.Tensor) or scale.numel() != 1:
            raise DataError(
                f"{files.logit_scale.name} is not a scalar tensor; reinstall: {INSTALL}"
            )
        # The file holds log(scale), as CLIP does: GeoCLIP multiplies cosines by its exp.
        return cls(encoder, head, float(scale.exp()), files,
                   _digest(files.location_weights, files.gallery_csv))  # fmt: skip

    def encode_locations(
        self, lon, lat, *, normalize: bool = True, batch_size: int = 4096
    ) -> np.ndarray:
        """(N,) lon, lat in degrees -> (N, 512) float32 embeddings.

        ``normalize=True`` (default) returns unit vectors, as GeoCLIP compares them;
        ``normalize=False`` returns the raw encoder output, as the package's
        ``LocationEncoder`` does (its ``GeoCLIP.forward`` normalises afterwards).
        """
        lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        if lon.shape != lat.shape or lon.ndim != 1:
            raise InputError(
                f"lon and lat must be 1-D of one length, got {lon.shape} and {lat.shape}"
            )
        if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
            raise InputError("lon/lat have non-finite values")
        if (np.abs(lat) > 90).any() or (np.abs(lon) > 180).any():
            raise InputError("lon must be within [-180, 180] and lat within [-90, 90]")
        lonlat = torch.from_numpy(np.stack([lon, lat], axis=1))  # float64 through the RFF
        out = np.empty((len(lon), DIM), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(lon), batch_size):
                y = self.location_encoder(lonlat[start : start + batch_size])
                if normalize:
                    y = nn.functional.normalize(y, dim=1)
                out[start : start + batch_size] = y.numpy()
        return out

    def image_head(self, features, *, normalize: bool = True) -> np.ndarray:
        """(N, 768) CLIP ViT-L/14 image features -> (N, 512) float32 (unit-norm by default)."""
        f = np.asarray(features, dtype=np.float32)
        f = f[None] if f.ndim == 1 else f
        if f.ndim != 2 or f.shape[1] != IMAGE_FEATURES:
            raise InputError(
                f"features must be (768,) or (N, 768), got {tuple(np.shape(features))}"
            )
        with torch.inference_mode():
            y = self.image_mlp(torch.from_numpy(np.ascontiguousarray(f)))
            if normalize:
                y = nn.functional.normalize(y, dim=1)
        return y.numpy()

    def embed_photos(self, images, clip: str | Path | CLIPTeacher | None = None) -> np.ndarray:
        """(N, 512) unit vectors of RGB photos (PIL or HWC uint8): CLIP image features
        (``clip``: a CLIPTeacher, or a name or folder for :func:`photo_clip`) through
        the image head, as GeoCLIP's own image encoder does."""
        return self.image_head(photo_clip(clip).image_features(list(images)))

    def gallery(self, size: int | None = None) -> Gallery:
        """The package's 100k GPS gallery (or its first ``size`` points) with embeddings.

        Encoded once per weights digest and size, then kept in the store (verified on
        read, bounded with the rest of the cache): a damaged entry is rebuilt.
        """
        size = GALLERY_SIZE if size is None else int(size)
        if not 1 <= size <= GALLERY_SIZE:
            raise InputError(f"gallery size must be between 1 and {GALLERY_SIZE}, got {size}")
        if size not in self._galleries:
            self._galleries[size] = self._open_gallery(size)
        return self._galleries[size]

    def predict(self, query_512, k: int = 5, *, gallery_size: int | None = None) -> Prediction:
        """Top-``k`` gallery points for 512-d queries (e.g. from :meth:`image_head`)."""
        return self.gallery(gallery_size).predict(query_512, k, self.logit_scale)

    def _open_gallery(self, size: int) -> Gallery:
        key = f"{self.digest[:16]}-{size}"
        store = ArrayStore("geoclip")
        entry_key = f"{CACHE_FORMAT}|{self.digest}|{size}"
        stored = store.read(entry_key)  # verified; a damaged entry is removed and rebuilt
        if stored is not None and self._fits(stored, size):
            return Gallery(stored["lon"], stored["lat"], stored["embeddings"], key)
        lon, lat = read_gallery_csv(self.files.gallery_csv, size)
        if len(lon) != size:
            raise DataError(f"{self.files.gallery_csv.name} has {len(lon)} rows, fewer than {size}")
        emb = np.empty((size, DIM), dtype=np.float32)
        step = 8192  # progress granularity (a full gallery takes about a minute on 2 cores)
        for start in tqdm(range(0, size, step), desc="GeoCLIP gallery", unit="batch", leave=False):
            emb[start : start + step] = self.encode_locations(
                lon[start : start + step], lat[start : start + step]
            )
        store.put(entry_key, {"lon": lon, "lat": lat, "embeddings": emb})
        return Gallery(lon, lat, emb, key)

    @staticmethod
    def _fits(stored: dict[str, np.ndarray], size: int) -> bool:
        shapes = {name: a.shape for name, a in stored.items()}
        return shapes == {"lon": (size,), "lat": (size,), "embeddings": (size, DIM)}


@cache
def _load_cached(root: Path) -> GeoClip:
    return GeoClip.from_files(GeoClipFiles(root))
