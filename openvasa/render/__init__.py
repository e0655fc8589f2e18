"""Render frames: the source portrait warped to target landmarks, with eyes and mouth interior."""
