"""Embedding fields: the time-free overhead part o of every cell's embedding, stored once
(Zarr, chunked, float32/float16/int8), so maps and searches at any time only run the
cheap location-and-time MLP. Build one with :func:`omnimap.fields.build.build_field`;
``omnimap.maps.engine.MapEngine(field=...)`` maps and searches it."""
