"""Runnable end-to-end examples (``omnimap example NAME``), offline."""
