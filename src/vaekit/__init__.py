"""vaekit: the VAE family of image generative models, trained, measured and compared in one place."""

__version__ = "0.1.0"


def load(path, device: str = "cpu"):
    """The trained model of a run folder or of a `vaekit export` folder, in eval mode, with `run_config`
    and `facts` attached: ready to `sample(n)`, `encode(x)`, `decode(z)` (vaekit.run.export)."""
    from .run.export import load as _load

    return _load(path, device)
