"""Audio analysis for driving face motion: per-video-frame speech features."""
