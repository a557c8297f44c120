"""The training recipes by name, over the one loop (``omnimap.train.loop``).

Each recipe is a config type (``omnimap.train.config``) and the hooks of
:class:`~omnimap.train.loop.Recipe`:

    omnimap train atlas [--config FILE] [--out DIR]     # the built-in world atlas
    omnimap train sat2cap --config FILE [--out DIR]     # Sat2Cap on geotagged photos
    omnimap train soundscape [--out DIR]                # the built-in soundscape model
    omnimap train geosound --config FILE [--out DIR]    # CLAP on geotagged recordings
"""

from __future__ import annotations

from pathlib import Path

from omnimap.core.errors import InputError
from omnimap.train.loop import Recipe, RunResult, train
from omnimap.train.recipes.atlas import AtlasRecipe
from omnimap.train.recipes.geosound import GeoSoundRecipe
from omnimap.train.recipes.sat2cap import Sat2CapRecipe
from omnimap.train.recipes.soundscape import SoundscapeRecipe

RECIPES: dict[str, type[Recipe]] = {
    r.config_type.recipe: r for r in (AtlasRecipe, Sat2CapRecipe, SoundscapeRecipe, GeoSoundRecipe)
}


def run_recipe(name: str, options: dict, out: Path | None, base_dir: Path | None = None,
               progress: bool = True) -> RunResult:  # fmt: skip
    """Train (or resume) recipe ``name`` with typed ``options`` into ``out`` (default
    runs/<name>); relative paths in ``options`` are resolved against ``base_dir``."""
    if name not in RECIPES:
        raise InputError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    cfg = recipe.config_type.from_dict(options, base_dir=base_dir)
    return train(recipe(cfg), out or Path("runs") / cfg.name, progress=progress)
