"""Provenance of generated media: an invisible watermark in every frame (watermark), the mp4's provenance tag
(metadata) and `openvasa verify` (verify). docs/provenance.md says how they work and what they do not guarantee."""
