"""vaekit: the VAE family of image generative models, trained, measured and compared in one place."""

__version__ = "0.1.0"
