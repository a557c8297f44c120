"""Maps: the query engine, its cache and the map files."""
