"""Audio-driven face motion in the FaceLatent space: user controls and the baseline generator."""
