"""Paired samples for the atlas: (overhead patch, location, time) <-> description.

Building a set: sample places and local times, derive the facts there and then,
describe them in words (several phrasings), embed each distinct sentence once with the
teacher, and cut the Blue Marble patch around each place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omnimap.datasets.atlas.describe import clauses_of, describe_with_parts, target_vectors
from omnimap.datasets.atlas.facts import Facts, compute_facts
from omnimap.datasets.atlas.layers import GroundLayers
from omnimap.datasets.atlas.sampling import sample_points, sample_times
from omnimap.geo.climatefeat import model_inputs
from omnimap.geo.timefeat import LocalTime


@dataclass
class AtlasSet:
    lon: np.ndarray
    lat: np.ndarray
    time: dict[str, np.ndarray]  # year, month, day, hour, day_of_year
    facts: Facts
    texts: list[str]  # distinct descriptions
    text_index: np.ndarray  # (N,) description of each sample
    parts: list[str]  # distinct sentences the teacher embeds (see describe.Descriptions)
    part_index: np.ndarray  # (len(texts), MAX_CLAUSES) clause ids of each description; -1 none
    scene_clauses: np.ndarray  # (len(texts),) how many leading clauses are the scene
    part_weights: np.ndarray  # (len(parts),) each clause's weight in a target

    def __len__(self) -> int:
        return len(self.lon)

    @property
    def descriptions(self) -> list[str]:
        return [self.texts[i] for i in self.text_index]

    def local_time(self) -> LocalTime:
        t = self.time
        return LocalTime(
            t["year"], t["month"], t["day"], t["hour"].astype(np.float64), t["day_of_year"]
        )

    def metadata(self, climate_inputs: bool = False) -> np.ndarray:
        """(N, F) dynamic inputs with the true local time: Sat2Cap's 12 values, plus
        the climate block (``geo.climatefeat``) when ``climate_inputs``."""
        return model_inputs(self.lon, self.lat, self.local_time(), climate_inputs)

    def target_vectors(self, teacher, progress: bool = False) -> np.ndarray:
        """(len(texts), D) teacher targets of the distinct descriptions."""
        parts = teacher.embed("text", self.parts, progress)
        return target_vectors(parts, self.part_index, self.part_weights)

    def scene_vectors(self, teacher) -> np.ndarray:
        """(len(texts), D) targets of the scene sentences alone: what a description
        says when the time is unknown."""
        parts = teacher.embed("text", self.parts)  # cached by the embedding store
        return target_vectors(parts, self.part_index, self.part_weights, self.scene_clauses)

    def clause_vectors(self, teacher, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """((len(texts), D) teacher vector of each description's ``kind`` clause ("rain":
        rain or snowfall, "warmth", "season"), zero where it has none; (len(texts),) the
        code it says, -1 none)."""
        clause, code = clauses_of(kind, self.parts, self.part_index)
        parts = teacher.embed("text", self.parts)  # cached by the embedding store
        vectors = np.concatenate([np.asarray(parts, np.float32), np.zeros((1, parts.shape[1]), np.float32)])
        return vectors[clause], code


def build_set(
    layers: GroundLayers, n: int, seed: int, accept=None, variants: int = 3,
) -> AtlasSet:  # fmt: skip
    """``n`` samples whose (lon, lat) pass ``accept``; ``variants`` phrasings per fact set."""
    rng = np.random.default_rng(seed)
    lon, lat = sample_points(layers, n, rng, accept=accept)
    time = sample_times(n, rng)
    facts = compute_facts(layers, lon, lat, time["month"], time["day_of_year"], time["hour"])
    d = describe_with_parts(facts, rng.integers(0, variants, n))
    return AtlasSet(
        lon=lon.astype(np.float32),
        lat=lat.astype(np.float32),
        time=time,
        facts=facts,
        texts=d.texts,
        text_index=d.index,
        parts=d.parts,
        part_index=d.part_index,
        scene_clauses=d.scene_clauses,
        part_weights=d.part_weights,
    )
