"""Paired samples for Sat2Cap-style training: ground photos with location, local time and
an overhead patch reference (``table``: GeoParquet), built from photo folders or CSVs
(``build``, with EXIF parsing in ``exif``), cut into streaming shards (``shards``)."""
