"""What a model can do, declared once on the model (diffusers' habit of declared flags): every caller
outside models/ - the evaluation, the pictures, the report, the explorer, the CLI, the contract tests -
asks this record instead of probing the model with `hasattr` or comparing its settings to strings."""

from __future__ import annotations

from dataclasses import dataclass

from ..conditioning import CONDITIONS, HALVES, QUADRANT_SETS, is_image_part, kept_quadrants
from ..errors import ConfigError

POSTERIORS = ("factorised", "sequential", "none")
OUTPUTS = ("image", "stages", "canvas")
BOUNDS = ("p(x)", "p(x|y)", None)
PRIORS = ("gaussian", "mixture", "autoregressive")


@dataclass(frozen=True)
class Capabilities:
    posterior: str = "factorised"
    #   factorised: encode(x, y) is one q(z|x, y) (the KL decomposition, disentanglement metrics and
    #   traversals by KL apply); sequential: DRAW's q(z_t | x, z_<t) (ELBO and IWAE apply, the rest not);
    #   none: a deterministic code (AE): no ELBO, no IWAE bound
    condition: str = "none"  # the side information y it takes (vaekit.conditioning.CONDITIONS)
    likelihood: bool = True  # log_likelihood(x, z, y, mask) is a density p(x|z, y): IWAE, completion by optimisation
    classifies: bool = False  # classify(x) gives log q(y|x) (M2, a CVAE-GAN's discriminator)
    semi_supervised: bool = False  # learns from unlabelled images too (data.labelled applies)
    output: str = "image"  # image | stages (decode_stages gives several, coarse to fine) | canvas
    #   (canvas_sequence: DRAW's canvas over time, with its attention boxes)
    prior: str = "gaussian"  # gaussian: prior(y, n) is one diagonal Gaussian (N(0, I), a CVAE's p(z|y)): KLs in
    #   closed form, the KL decomposition against N(0, I) applies | mixture: a mixture (VampPrior): its density
    #   and draws are the mixture's, its KL is estimated by sampling, the decomposition does not apply |
    #   autoregressive: a learned prior over discrete codes (VQ-VAE's PixelCNN) draws `prior_sample`; prior(y, n)
    #   is only the codes' spread (a slider's scale)
    discrete: bool = False  # encode(x, y) gives a grid of codebook indices (VQ-VAE); latent_code the continuous
    #   code that decode quantises
    refinable: bool = False  # loss_and_output gives the decoded image of its pass and one total `loss`: refine
    #   stages build on it
    declared_bound: str | None = "auto"  # what `bound` says; "auto": derived from the fields above (M2,
    #   label-conditional in its decoder but with y latent, declares "p(x)")

    def __post_init__(self):
        if self.posterior not in POSTERIORS:
            raise ConfigError(f"posterior must be one of {POSTERIORS}, got {self.posterior!r}")
        if self.condition not in CONDITIONS:
            raise ConfigError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")
        if self.prior not in PRIORS:
            raise ConfigError(f"prior must be one of {PRIORS}, got {self.prior!r}")
        if self.output not in OUTPUTS:
            raise ConfigError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.declared_bound != "auto" and self.declared_bound not in BOUNDS:
            raise ConfigError(f"declared_bound must be auto or one of {BOUNDS}, got {self.declared_bound!r}")

    # --- what follows from the record -------------------------------------------------------
    @property
    def label_conditional(self) -> bool:
        return self.condition == "label"

    @property
    def image_conditional(self) -> bool:
        """Conditioned on a kept part of the image (a half, any half, or quadrants)."""
        return is_image_part(self.condition)

    @property
    def conditional(self) -> bool:
        return self.condition != "none"

    @property
    def bound(self) -> str | None:
        """The likelihood its ELBO and IWAE bound are of: "p(x)", "p(x|y)" (y its side information, a
        label or a kept part), or None (no posterior or no likelihood: neither applies)."""
        if self.declared_bound != "auto":
            return self.declared_bound
        if self.posterior == "none" or not self.likelihood:
            return None
        return "p(x|y)" if self.conditional else "p(x)"

    @property
    def no_bound_reason(self) -> str:
        """Why no ELBO / IWAE bound applies (where `bound` is None), in a few words."""
        if self.discrete:
            return "q(z|x) is a point mass on one code grid: its IWAE bound is its ELBO for every K"
        if self.posterior == "none":
            return "this model has no posterior q(z|x)"
        return "this model has no likelihood p(x|z)"

    @property
    def factorised(self) -> bool:
        return self.posterior == "factorised"

    def completion_keeps(self) -> tuple[str, ...]:
        """The kept parts it completes from its prior p(z|y) (a model conditioned on an image part)."""
        if self.condition in HALVES:
            return (self.condition,)
        return {"half": HALVES, "quadrants": (*HALVES, *QUADRANT_SETS)}.get(self.condition, ())

    def completes_from_prior(self, keep: str) -> bool:
        kept = kept_quadrants(keep)
        return any(kept_quadrants(k) == kept for k in self.completion_keeps())

    @property
    def default_completion(self) -> str:
        """The kept part an evaluation completes by default: the one it was trained on (left for any
        half, the top-left quadrant for quadrants), "off" for a model not conditioned on an image part."""
        return {"half": "left", "quadrants": "tl"}.get(self.condition, self.condition) if self.image_conditional \
            else "off"
