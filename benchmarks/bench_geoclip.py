"""Why omnimap caches GeoCLIP's gallery: one "where was this taken?" query against the
100k GPS gallery with our cached gallery embeddings vs the package's own approach, whose
``GeoCLIP.predict`` re-encodes every gallery point on every call.

    python benchmarks/bench_geoclip.py [--package-calls 2] [--queries 1000] [--cache-dir DIR]

Needs ``pip install --no-deps geoclip==1.3.0``. The package's ``__init__`` imports
torchvision, so its location-encoder module is loaded by file path (its own code and
weights, nothing of ours) and fed the package's gallery as its ``load_gps_data`` reads
it. CLIP ViT-L/14 is not available offline, so both sides get ready 512-d queries:
location embeddings of landmarks, as a well-aligned image would give, and of
``--queries`` random points a few km from gallery points.

Timing: ours best of 20 on one landmark query, gallery in memory (``ratio``) and, from a
fresh object that reads and verifies the cache file (``ratio_cold``); the package best of
``--package-calls`` single-image calls. Both run in this one process on the same threads.

Agreement: embeddings on ``--points`` random points (uniform on the sphere), ours and the
package's each against an all-float64 pass of the same weights; top-k of every query,
ours vs the package's (its scoring, from one batched encode of the gallery). The package
encodes in float32, whose rounding (~2e-4 on unit gallery vectors) can swap gallery
points that tie to ~1e-6 in probability (duplicates, points metres apart): such swaps
are counted apart from real disagreements.

The cache is built in a fresh temporary directory (unless ``--cache-dir``), so the
one-time build is measured too.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

from common import best_of, save

LANDMARKS = {  # (lon, lat)
    "Eiffel Tower": (2.2945, 48.8584),
    "Statue of Liberty": (-74.0445, 40.6892),
    "Sydney Opera House": (151.2153, -33.8568),
    "Kilimanjaro": (37.3556, -3.0674),
}


def load_reference():
    """The package's ``model/location_encoder.py`` and ``model/misc.py``, by path, under a
    private parent package whose ``__init__`` is empty (the real one imports torchvision)."""
    spec = importlib.util.find_spec("geoclip")
    if spec is None:
        sys.exit("geoclip is not installed: pip install --no-deps geoclip==1.3.0")
    root = Path(next(iter(spec.submodule_search_locations)))
    for name, path in (("_geoclip_ref", root), ("_geoclip_ref.model", root / "model")):
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        sys.modules[name] = module
    encoder = importlib.import_module("_geoclip_ref.model.location_encoder")
    misc = importlib.import_module("_geoclip_ref.model.misc")
    assert "torchvision" not in sys.modules
    return encoder, misc, root / "model"


def haversine_km(lon1, lat1, lon2, lat2):
    lon1, lat1, lon2, lat2 = map(np.radians, (lon1, lat1, lon2, lat2))
    h = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0088 * np.arcsin(np.sqrt(h))


def agreement(ours, ref_encoder, points: int) -> dict:
    """Raw (unnormalised) embeddings: ours vs the package's vs an all-float64 pass."""
    from omnimap.models.geoclip import LocationEncoder

    rng = np.random.default_rng(0)
    # float32-representable inputs: the package casts GPS to float32, so both see the same point
    lon = rng.uniform(-180, 180, points).astype(np.float32).astype(np.float64)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, points))).astype(np.float32).astype(np.float64)
    mine = ours.encode_locations(lon, lat, normalize=False)
    with torch.no_grad():
        theirs = ref_encoder(torch.tensor(np.stack([lat, lon], 1), dtype=torch.float32)).numpy()
        exact = LocationEncoder().double()
        exact.load_state_dict(ours.location_encoder.state_dict())
        truth = exact(torch.from_numpy(np.stack([lon, lat], 1))).numpy()
    unit = ours.encode_locations(lon, lat)
    theirs_unit = theirs / np.linalg.norm(theirs, axis=1, keepdims=True)
    return {
        "agreement_points": points,
        "raw_max_abs_diff": float(np.abs(mine - theirs).max()),
        "raw_max_abs_value": float(np.abs(theirs).max()),
        "unit_max_abs_diff": float(np.abs(unit - theirs_unit).max()),
        "min_cosine_ours_vs_package": float((unit * theirs_unit).sum(1).min()),
        "ours_vs_float64_max_abs": float(np.abs(mine - truth).max()),
        "package_vs_float64_max_abs": float(np.abs(theirs - truth).max()),
    }


def package_scores(encoder, gallery_latlon, logit_scale, image_features):
    """The package's GeoCLIP.forward + softmax after its image encoder: encode the whole
    gallery, normalise both sides, scaled cosines, softmax over the gallery."""
    with torch.no_grad():
        location_features = torch.nn.functional.normalize(encoder(gallery_latlon), dim=1)
        image = torch.nn.functional.normalize(image_features, dim=1)
        return (logit_scale.exp() * (image @ location_features.t())).softmax(dim=-1)


def package_predict(encoder, gallery_latlon, logit_scale, image_features, k):
    """The package's GeoCLIP.predict for one image: top-k GPS (lat, lon) and probabilities."""
    top = torch.topk(package_scores(encoder, gallery_latlon, logit_scale, image_features), k, dim=1)
    return gallery_latlon.index_select(0, top.indices[0]), top.values[0], top.indices[0]


def compare_top_k(ours_index, ours_prob_full, ref_index, ref_prob_full) -> dict:
    """Top-k of one query, ours vs the package's. Where the picks at a rank differ, it is
    a near-tie when both implementations score the two points within their measured
    noise (the query's largest probability difference over the gallery) of each other."""
    noise = float(np.abs(ours_prob_full - ref_prob_full).max())
    swaps = [(a, b) for a, b in zip(ours_index, ref_index, strict=True) if a != b]
    gaps = [max(abs(ref_prob_full[a] - ref_prob_full[b]), abs(ours_prob_full[a] - ours_prob_full[b]))
            for a, b in swaps]  # fmt: skip
    return {"identical": not swaps, "ties_only": all(g <= 2 * noise for g in gaps),
            "swaps": swaps, "max_gap": max(gaps, default=0.0)}  # fmt: skip


def main(
    package_calls: int = 2,
    queries: int = 1000,
    points: int = 1000,
    k: int = 5,
    cache_dir: str | None = None,
) -> dict:
    os.environ.setdefault("TQDM_DISABLE", "1")
    old = os.environ.get("OMNIMAP_CACHE_DIR")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["OMNIMAP_CACHE_DIR"] = cache_dir or tmp  # read by cache_dir() on each call
        try:
            return _run(package_calls, queries, points, k)
        finally:
            if old is None:
                os.environ.pop("OMNIMAP_CACHE_DIR", None)
            else:
                os.environ["OMNIMAP_CACHE_DIR"] = old


def _run(package_calls: int, n_queries: int, points: int, k: int) -> dict:
    from omnimap.models.geoclip import GeoClip

    ref_module, ref_misc, ref_root = load_reference()
    ours = GeoClip.load()
    ref_encoder = ref_module.LocationEncoder().eval()  # loads its weights (weights_only)
    result = {"threads": torch.get_num_threads(), **agreement(ours, ref_encoder, points)}

    started = time.perf_counter()
    gallery = ours.gallery()
    result["cache_build_s"] = time.perf_counter() - started  # once per weights digest
    result["gallery_points"] = len(gallery)
    result["gallery_mb"] = gallery.embeddings.nbytes / 1e6  # the cache is a store entry now

    names = list(LANDMARKS)
    rng = np.random.default_rng(2)
    near = rng.choice(len(gallery), n_queries, replace=False)
    lon = np.concatenate([[LANDMARKS[n][0] for n in names], gallery.lon[near]])
    lat = np.concatenate([[LANDMARKS[n][1] for n in names], gallery.lat[near]])
    jitter = rng.normal(0, 0.05, (2, len(lon)))  # degrees: a few km off the gallery point
    jitter[:, : len(names)] = 0  # landmarks exactly
    lon = (lon + jitter[0] + 180) % 360 - 180
    lat = np.clip(lat + jitter[1], -90, 90)
    queries = ours.encode_locations(lon, lat)

    # Cold: a fresh object reads and verifies the 200 MB cache file, then answers.
    fresh = GeoClip(
        ours.location_encoder, ours.image_mlp, ours.logit_scale, ours.files, ours.digest
    )
    started = time.perf_counter()
    fresh.predict(queries[0], k)
    result["ours_cold_query_s"] = time.perf_counter() - started
    result["ours_query_s"] = best_of(lambda: ours.predict(queries[0], k), repeat=20)

    gallery_latlon = ref_misc.load_gps_data(str(ref_root / "gps_gallery" / "coordinates_100K.csv"))
    logit_scale = torch.load(
        ref_root / "weights" / "logit_scale_weights.pth", map_location="cpu", weights_only=True
    )
    image = torch.from_numpy(queries[:1])
    result["package_query_s"] = best_of(
        lambda: package_predict(ref_encoder, gallery_latlon, logit_scale, image, k), package_calls
    )
    result["ratio"] = result["package_query_s"] / result["ours_query_s"]
    result["ratio_cold"] = result["package_query_s"] / result["ours_cold_query_s"]

    # Agreement of the answers: the package's scores for every query from one encode.
    ref_prob = package_scores(ref_encoder, gallery_latlon, logit_scale, torch.from_numpy(queries))
    ref_top = torch.topk(ref_prob, k, dim=1).indices.numpy()
    ref_prob = ref_prob.numpy()
    mine = ours.predict(queries, k)
    with torch.no_grad():  # our full softmax, as Gallery.predict computes it before top-k
        cos = torch.from_numpy(queries) @ torch.from_numpy(gallery.embeddings).T
        ours_prob = torch.softmax(ours.logit_scale * cos, dim=1).numpy()
    verdicts = [
        compare_top_k(mine.index[i], ours_prob[i], ref_top[i], ref_prob[i])
        for i in range(len(queries))
    ]
    same = np.array([v["identical"] for v in verdicts])
    ties = np.array([v["ties_only"] for v in verdicts])
    swaps = [pair for v in verdicts for pair in v["swaps"]]
    swap_km = [haversine_km(gallery.lon[a], gallery.lat[a], gallery.lon[b], gallery.lat[b])
               for a, b in swaps]  # fmt: skip
    result["k"] = k
    result["landmarks_identical_top_k"] = {n: bool(same[i]) for i, n in enumerate(names)}
    result["landmarks_identical_up_to_ties"] = bool(ties[: len(names)].all())
    result["queries_compared"] = len(queries)
    result["identical_top_k_share"] = float(same.mean())
    result["identical_up_to_ties_share"] = float(ties.mean())
    result["identical_top1_share"] = float((mine.index[:, 0] == ref_top[:, 0]).mean())
    result["max_prob_diff"] = float(np.abs(ours_prob - ref_prob).max())
    result["swapped_picks"] = len(swaps)
    result["swapped_max_prob_gap"] = float(max((v["max_gap"] for v in verdicts), default=0.0))
    result["swapped_max_km_apart"] = float(max(swap_km, default=0.0))
    result["top1_km_from_landmark"] = {
        n: round(float(haversine_km(*LANDMARKS[n], mine.lon[i, 0], mine.lat[i, 0])), 3)
        for i, n in enumerate(names)
    }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--package-calls", type=int, default=2, help="timed package calls (best of)"
    )
    parser.add_argument("--queries", type=int, default=1000, help="random queries compared")
    parser.add_argument("--points", type=int, default=1000, help="points for embedding agreement")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument(
        "--cache-dir", default=None, help="keep the gallery cache here (default: temp)"
    )
    args = parser.parse_args()
    r = main(args.package_calls, args.queries, args.points, args.k, args.cache_dir)
    for key, v in r.items():
        print(f"{key:30s} {v:,.6g}" if isinstance(v, float) else f"{key:30s} {v}")
    print("saved", save("geoclip", r))
