"""Training data: real talking videos -> aligned (audio, face latent) shards, and a loader of windows."""
