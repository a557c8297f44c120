"""Tile server and web map: ``omnimap serve`` (see :func:`omnimap.serve.app.create_app`).

Nothing is imported here, so ``omnimap`` commands that do not serve never load
FastAPI or uvicorn.
"""
