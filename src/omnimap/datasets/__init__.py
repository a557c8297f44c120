"""Training and evaluation data: the atlas (facts and descriptions from real global
layers), pairs tables and shards of geotagged photos, cross-view samples by row, and a
synthetic cross-view world for offline examples."""
