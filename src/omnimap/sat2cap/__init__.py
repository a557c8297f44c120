"""The Sat2Cap recipe on real cross-view data.

A frozen CLIP embeds ground photos (image tower) and queries (text tower); a student
made of CLIP's vision tower (initialised from the teacher) plus the Sat2Cap dynamic
encoder learns to predict the photo's embedding from the overhead image, the place
and the local time. Modules, one job each:

- ``teacher``: the frozen CLIP (image and text towers, weight digests, preprocessing)
- ``overhead``: CLIP's vision tower as an overhead encoder (``"clip_vision"``)
- ``augment``: RandomResizedCrop + RandAugment on batches, seeded per step
- ``config``: the typed training configuration
- ``data``: paired samples by row (pairs table or shards), cached teacher embeddings
- ``batches``: what step s uses (batch rows, augmentation, dropout), seeded; prefetching
- ``state``: optimizer/scheduler/queue state as safetensors + JSON (exact resume)
- ``distributed``: torchrun/DDP helpers (gathering teacher keys)
- ``train``: the training loop
- ``evaluate``: retrieval both ways with baseline and ablation rows
- ``search``: text -> overhead retrieval (contact sheet + GeoJSON)
- ``captions``: rank a caption bank for a place and time
- ``tiny``: a tiny random CLIP saved like a hub model (tests, example, benchmarks)
- ``synthetic``: a synthetic cross-view world (overhead GeoTIFF, photo content)
- ``example``: the offline end-to-end example
- ``cli``: typer commands over the above
"""
