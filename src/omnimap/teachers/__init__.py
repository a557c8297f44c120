"""Frozen teachers behind one protocol and a registry (see ``teachers.base``)."""
