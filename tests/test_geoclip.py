"""GeoCLIP location encoder, image head and cached GPS gallery (weights from the
``geoclip`` package, read as files; never imported, never unpickled).

Galleries here are small subsets (the full 100k takes ~20-50 s to encode on 2 cores;
benchmarks/bench_geoclip.py covers it).
"""

import importlib
import importlib.util
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from omnimap.core.errors import DataError, InputError
from omnimap.models import geoclip as gc
from omnimap.models.geoclip import GeoClip, GeoClipFiles
from omnimap.resources.packages import package_dir

if importlib.util.find_spec("geoclip") is None:
    pytest.skip("needs pip install --no-deps geoclip==1.3.0", allow_module_level=True)

PARIS = (2.3522, 48.8566)


@pytest.fixture(scope="module")
def model():
    return GeoClip.load()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIMAP_CACHE_DIR", str(tmp_path))
    return tmp_path / "geoclip"


def destination(lon, lat, km, bearing_deg):
    """Point ``km`` away on the sphere along a bearing (degrees from north)."""
    d, b = km / 6371.0088, math.radians(bearing_deg)
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(
        math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2)
    )
    return math.degrees(l2), math.degrees(p2)


def haversine_km(lon1, lat1, lon2, lat2):
    lon1, lat1, lon2, lat2 = map(np.radians, (lon1, lat1, lon2, lat2))
    h = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0088 * np.arcsin(np.sqrt(h))


def fresh(model):
    """Same modules, empty in-memory gallery memo: the next gallery() goes to disk."""
    return GeoClip(
        model.location_encoder, model.image_mlp, model.logit_scale, model.files, model.digest
    )


def count_encodes(model, monkeypatch):
    calls = []
    original = model.encode_locations

    def counting(*args, **kwargs):
        calls.append(len(np.atleast_1d(args[0])))
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "encode_locations", counting)
    return calls


# --- weights ---------------------------------------------------------------------------


def test_weights_load_strictly_with_weights_only(monkeypatch):
    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    m = GeoClip.from_files(gc.package_files())
    assert seen == [True, True, True]  # location weights, image head, logit scale

    shipped = real_load(m.files.location_weights, map_location="cpu", weights_only=True)
    state = m.location_encoder.state_dict()
    assert list(state) == list(shipped) and len(state) == 27
    assert sum(v.numel() for v in state.values()) == 9_449_472
    for key, value in shipped.items():
        assert torch.equal(state[key], value), key
    # The random Fourier matrices ship in the weights, drawn with std sigma = 1, 16, 256.
    for i, sigma in enumerate(gc.SIGMAS):
        b = state[f"LocEnc{i}.capsule.0.b"]
        assert b.shape == (256, 2)
        assert 0.9 * sigma < float(b.std()) < 1.1 * sigma
    assert sum(p.numel() for p in m.image_mlp.parameters()) == 984_320
    assert m.logit_scale == pytest.approx(math.exp(3.6810), rel=1e-4)  # about 39.69


def test_load_is_memoised(model):
    assert GeoClip.load() is model


def package_copy(tmp_path, **replace):
    """A folder laid out like geoclip/model: links to the real files, some replaced."""
    src = gc.package_files()
    root = tmp_path / "model"
    for real in (src.location_weights, src.image_weights, src.logit_scale, src.gallery_csv):
        rel = real.relative_to(src.root)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.name in replace:
            if replace[rel.name] is not None:
                torch.save(replace[rel.name], root / rel)
        else:
            (root / rel).symlink_to(real)
    return GeoClipFiles(root)


def test_mismatched_weights_are_a_data_error(tmp_path):
    shipped = torch.load(gc.package_files().location_weights, map_location="cpu", weights_only=True)
    shipped.pop("LocEnc2.head.0.bias")
    files = package_copy(tmp_path, **{"location_encoder_weights.pth": shipped})
    with pytest.raises(DataError, match="does not fit GeoCLIP's layers"):
        GeoClip.from_files(files)


def test_missing_file_is_a_data_error(tmp_path):
    files = package_copy(tmp_path, **{"logit_scale_weights.pth": None})
    with pytest.raises(DataError, match="logit_scale_weights.pth is missing"):
        GeoClip.from_files(files)


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "geoclip" else real(name, *a)
    )
    package_dir.cache_clear()  # it memoises the real location
    try:
        with pytest.raises(DataError, match=r"pip install --no-deps geoclip==1\.3\.0"):
            GeoClip.load()
    finally:
        package_dir.cache_clear()


# --- location encoder ------------------------------------------------------------------


def test_shapes_dtypes_and_normalisation(model):
    e = model.encode_locations([0.0, 10.0, -120.5], [0.0, 45.0, -33.3])
    assert e.shape == (3, 512) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    raw = model.encode_locations([0.0, 10.0, -120.5], [0.0, 45.0, -33.3], normalize=False)
    assert raw.dtype == np.float32
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), e, atol=1e-6)
    assert model.encode_locations(*PARIS).shape == (1, 512)
    # Batching does not change the answer.
    lon, lat = np.linspace(-170, 170, 37), np.linspace(-60, 70, 37)
    np.testing.assert_allclose(
        model.encode_locations(lon, lat, batch_size=5), model.encode_locations(lon, lat), atol=1e-6
    )


def test_bad_coordinates_are_input_errors(model):
    with pytest.raises(InputError):
        model.encode_locations([0.0, 1.0], [0.0])
    with pytest.raises(InputError):
        model.encode_locations([0.0], [91.0])
    with pytest.raises(InputError):
        model.encode_locations([float("nan")], [0.0])


def test_equal_earth_projection_known_values():
    lonlat = torch.tensor([[0.0, 0.0], [180.0, 0.0], [-180.0, 0.0], [0.0, 90.0], [90.0, 45.0]],
                          dtype=torch.float64)  # fmt: skip
    v = gc.project(lonlat).numpy()
    np.testing.assert_allclose(v[0], [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(v[1:3, 0], [1.0, -1.0], atol=1e-6)  # GeoCLIP's scale: |x| <= 1
    # The projection's published extents (unit sphere): |x| <= 2.7066297, |y| <= 1.3173627.
    x, y = gc.equal_earth(torch.tensor([180.0, 0.0], dtype=torch.float64),
                          torch.tensor([0.0, 90.0], dtype=torch.float64))  # fmt: skip
    assert float(x[0]) == pytest.approx(2.7066297, abs=1e-6)
    assert float(y[1]) == pytest.approx(1.3173627, abs=1e-6)
    assert v[3, 1] == pytest.approx(1.3173627 * gc.GEOCLIP_SF / 180, abs=1e-6)
    # Equal area: the projection's Jacobian is constant, here |d(x,y)/d(lon,lat)| / cos(lat).
    pts = torch.tensor([[10.0, 0.0], [10.0, 30.0], [10.0, 60.0], [10.0, 80.0]], dtype=torch.float64)
    ratios = []
    for p in pts:
        jac = torch.autograd.functional.jacobian(lambda q: gc.project(q[None])[0], p)
        ratios.append(float(torch.det(jac)) / math.cos(math.radians(float(p[1]))))
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-4)


def test_paris_and_12_km_away_are_weakly_similar(model):
    """GeoCLIP's embedding is high-frequency: 12 km already drops the cosine to ~0.36."""
    cosines = {}
    for km in (1, 12, 1000):
        pts = [destination(*PARIS, km, bearing) for bearing in (0, 90, 180, 270)]
        e = model.encode_locations(
            [PARIS[0]] + [p[0] for p in pts], [PARIS[1]] + [p[1] for p in pts]
        )
        cosines[km] = e[1:] @ e[0]
    assert np.all(cosines[1] > 0.9)
    assert np.all((cosines[12] > 0.25) & (cosines[12] < 0.5)), cosines[12]
    assert 0.3 < cosines[12].mean() < 0.45  # 0.385 over the four bearings
    assert np.all(np.abs(cosines[1000]) < 0.15)


def test_nearby_points_are_more_similar_than_far_ones(model):
    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(-170, 170, 100), rng.uniform(-60, 60, 100)
    near = np.array(
        [destination(a, b, 3, rng.uniform(0, 360)) for a, b in zip(lon, lat, strict=True)]
    )
    far = np.array(
        [destination(a, b, 3000, rng.uniform(0, 360)) for a, b in zip(lon, lat, strict=True)]
    )
    near[:, 0] = (near[:, 0] + 180) % 360 - 180
    far[:, 0] = (far[:, 0] + 180) % 360 - 180
    e = model.encode_locations(lon, lat)
    cos_near = (e * model.encode_locations(near[:, 0], near[:, 1])).sum(1)
    cos_far = (e * model.encode_locations(far[:, 0], far[:, 1])).sum(1)
    assert cos_near.mean() > cos_far.mean() + 0.4
    assert np.mean(cos_near > cos_far) > 0.95


# --- image head ------------------------------------------------------------------------


def test_image_head_is_the_shipped_mlp(model):
    state = torch.load(model.files.image_weights, map_location="cpu", weights_only=True)
    x = np.random.default_rng(0).normal(size=(3, 768)).astype(np.float32)
    h = np.maximum(x @ state["0.weight"].numpy().T + state["0.bias"].numpy(), 0)
    expected = h @ state["2.weight"].numpy().T + state["2.bias"].numpy()
    np.testing.assert_allclose(model.image_head(x, normalize=False), expected, atol=1e-4)
    unit = model.image_head(x)
    assert unit.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    assert model.image_head(x[0]).shape == (1, 512)
    with pytest.raises(InputError):
        model.image_head(np.zeros((2, 512)))


# --- gallery and prediction ------------------------------------------------------------


def test_gallery_subset_matches_the_csv(model, cache):
    g = model.gallery(300)
    assert len(g) == 300 and g.embeddings.shape == (300, 512) and g.embeddings.dtype == np.float32
    # First CSV row is "LAT,LON" = -50.943392,-72.935664: stored as (lon, lat).
    assert (g.lon[0], g.lat[0]) == (-72.935664, -50.943392)
    np.testing.assert_allclose(g.embeddings, model.encode_locations(g.lon, g.lat), atol=1e-6)
    assert model.gallery(300) is g  # memoised in memory
    with pytest.raises(InputError):
        model.gallery(0)
    with pytest.raises(InputError):
        model.gallery(100_001)


def test_own_embedding_retrieves_a_nearby_gallery_point(model, cache):
    g = model.gallery(3000)
    idx = np.arange(0, 3000, 30)
    # 2 km east of 100 gallery points: their embeddings retrieve a point within a few km.
    lon = g.lon[idx] + 2 / (111.32 * np.cos(np.radians(g.lat[idx])))
    keep = np.abs(lon) <= 180
    pred = model.predict(
        model.encode_locations(lon[keep], g.lat[idx][keep]), k=5, gallery_size=3000
    )
    assert pred.index.shape == (keep.sum(), 5)
    km = haversine_km(lon[keep], g.lat[idx][keep], pred.lon[:, 0], pred.lat[:, 0])
    assert np.all(km < 25) and np.median(km) < 2.5
    assert np.all(np.diff(pred.prob, axis=1) <= 0)  # best first
    assert np.all(pred.prob.sum(1) <= 1 + 1e-5)
    # An exact gallery point finds itself (or a duplicate of it) first, with most of the mass.
    one = model.predict(g.embeddings[42], k=3, gallery_size=3000)
    assert one.index.shape == (3,)
    assert haversine_km(g.lon[42], g.lat[42], one.lon[0], one.lat[0]) < 1e-6
    full = model.predict(g.embeddings[42] * 7.0, k=3000, gallery_size=3000)  # scale-free
    assert full.prob.sum() == pytest.approx(1.0, abs=1e-4)  # k = whole gallery
    same_place = (g.lon[full.index] == g.lon[42]) & (g.lat[full.index] == g.lat[42])
    assert full.prob[same_place].sum() > 0.9
    # Logit scale applied to cosines: log-odds of two points = scale * cosine gap.
    i, j = full.index[0], full.index[10]
    cos = g.embeddings[[i, j]] @ g.embeddings[42]
    assert math.log(full.prob[0] / full.prob[10]) == pytest.approx(
        model.logit_scale * (cos[0] - cos[1]), rel=1e-3
    )
    with pytest.raises(InputError):
        model.predict(np.zeros(511), k=1, gallery_size=3000)
    with pytest.raises(InputError):
        model.predict(g.embeddings[0], k=3001, gallery_size=3000)


def entry_files(cache):
    return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


def test_gallery_cache_is_reused(model, cache, monkeypatch):
    first = fresh(model)
    calls = count_encodes(first, monkeypatch)
    g1 = first.gallery(500)
    assert sum(calls) == 500
    files = entry_files(cache)
    assert len(files) == 2 and {f.rsplit(".", 1)[1] for f in files} == {"bin", "json"}  # no temps

    second = fresh(model)
    calls2 = count_encodes(second, monkeypatch)
    g2 = second.gallery(500)
    assert calls2 == []  # read from disk, not re-encoded
    np.testing.assert_array_equal(g2.embeddings, g1.embeddings)
    np.testing.assert_array_equal(g2.lon, g1.lon)
    assert g2.key == g1.key


@pytest.mark.parametrize("damage", ["flip_data_byte", "truncate", "garbage_manifest"])
def test_corrupt_gallery_cache_is_detected_and_rebuilt(model, cache, monkeypatch, caplog, damage):
    good = fresh(model).gallery(200)
    (data,) = cache.glob("*.bin")
    path = data if damage != "garbage_manifest" else data.with_suffix(".json")
    blob = bytearray(path.read_bytes())
    if damage == "flip_data_byte":
        blob[-1000] ^= 0x40  # inside the embeddings: only the digest notices
    elif damage == "truncate":
        blob = blob[: len(blob) // 2]
    else:
        blob[8:40] = b"{not json" + b" " * 23
    path.write_bytes(bytes(blob))

    again = fresh(model)
    calls = count_encodes(again, monkeypatch)
    rebuilt = again.gallery(200)
    assert sum(calls) == 200  # re-encoded
    np.testing.assert_array_equal(rebuilt.embeddings, good.embeddings)
    later = fresh(model)
    later_calls = count_encodes(later, monkeypatch)
    later.gallery(200)
    assert later_calls == []  # the rewritten entry is valid


def test_cache_of_other_weights_is_not_used(model, cache, monkeypatch):
    model_a = fresh(model)
    model_a.gallery(100)
    other = GeoClip(
        model.location_encoder, model.image_mlp, model.logit_scale, model.files, "0" * 32
    )
    calls = count_encodes(other, monkeypatch)
    other.gallery(100)
    assert sum(calls) == 100 and len(entry_files(cache)) == 4


def test_unwritable_cache_still_gives_the_gallery(model, tmp_path, monkeypatch, caplog):
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("OMNIMAP_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    with caplog.at_level("WARNING"):
        g = fresh(model).gallery(100)
    assert len(g) == 100 and "cache off" in caplog.text


# --- agreement with the package --------------------------------------------------------


def load_reference_encoder():
    """The package's location_encoder.py by path, skipping its __init__ (torchvision)."""
    root = package_dir("geoclip", gc.PIP_NAME)
    for name, path in (("_geoclip_ref", root), ("_geoclip_ref.model", root / "model")):
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        sys.modules.setdefault(name, module)
    try:
        return importlib.import_module("_geoclip_ref.model.location_encoder")
    except ImportError as exc:
        pytest.skip(f"the package's encoder does not import here: {exc}")


def test_embeddings_equal_the_packages(model):
    ref = load_reference_encoder().LocationEncoder().eval()  # its own weights, weights_only
    rng = np.random.default_rng(3)
    lon = rng.uniform(-180, 180, 200).astype(np.float32).astype(np.float64)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, 200))).astype(np.float32).astype(np.float64)
    with torch.no_grad():
        theirs = ref(torch.tensor(np.stack([lat, lon], 1), dtype=torch.float32)).numpy()
    mine = model.encode_locations(lon, lat, normalize=False)
    # The package runs in float32 (its own error is ~2e-5 here); ours is within 4e-8 of float64.
    assert np.abs(mine - theirs).max() < 5e-5
    cos = (mine * theirs).sum(1) / np.linalg.norm(mine, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cos.min() > 0.99999
    assert "torchvision" not in sys.modules


def test_module_never_imports_the_package():
    src = Path(gc.__file__).read_text(encoding="utf-8")
    assert "import geoclip" not in src and "from geoclip" not in src
