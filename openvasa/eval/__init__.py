"""Measurements of generated videos (identity, landmarks re-detected in rendered frames)."""
