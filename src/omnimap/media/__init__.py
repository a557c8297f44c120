"""Decoding of users' media (sound clips) into arrays that teachers embed."""
