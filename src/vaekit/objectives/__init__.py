"""Training objectives beyond the plain ELBO, one module per family: `image_losses` (l1, l2,
feature distances), `adversarial` (GAN losses), `total_correlation` (beta-TCVAE terms).

`total_correlation`: the beta-TCVAE split of the KL into index-code MI, total correlation and
dimension-wise KL, with the minibatch-weighted (MWS) and minibatch-stratified (MSS) estimators of
the aggregate posterior q(z) (Chen et al. 2018). Per-sample values, (B,), in nats.
"""

from .total_correlation import (
    ESTIMATORS,
    beta_tc_penalty,
    log_q_z_matrix,
    log_qz_estimates,
    tc_decomposition,
)

__all__ = ["ESTIMATORS", "beta_tc_penalty", "log_q_z_matrix", "log_qz_estimates", "tc_decomposition"]
