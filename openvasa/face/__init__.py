"""Face analysis (detect, crop, landmarks) and the explicit face latent."""
