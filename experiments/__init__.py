"""genjax experiments: `python -m experiments` lists them, `python -m experiments tour` runs them.

Each experiment is a module `experiments.<name>` defining `EXPERIMENT`; see `_framework.py`.
"""

from __future__ import annotations

import importlib

# name -> one line, in tour order (the order of the course). Kept here so that listing the
# experiments does not import them.
REGISTRY: dict[str, str] = {
    "info_theory": "entropy, cross-entropy, KL and JS: the weather-coding table, KL vs JS, forward vs reverse KL",
    "mnist_classifier": "a small CNN trained with the runtime; its features serve FID/KID on MNIST",
    "gan_nash": "the x*y game: simultaneous gradient steps spiral out at sqrt(1 + lr^2) per step, alternating steps orbit",
    "gan_vanishing_gradients": "why GANs are hard to train: a perfect discriminator on low-dimensional supports, and the minimax generator gradient vanishing (Arjovsky-Bottou)",
    "gan_mode_collapse": "the 2-D ring and grid benchmark: modes captured, high-quality samples, reverse KL for GAN, NS-GAN, WGAN, WGAN-GP, minibatch discrimination, feature matching",
    "gan_mnist": "a DCGAN on MNIST with each improved-training technique as a switch, WGAN and WGAN-GP: samples, MNIST-feature FID/KID, the critic's Wasserstein estimate",
    "autoencoders": "plain, denoising, sparse, k-sparse and contractive autoencoders on MNIST: filters, sparsity, contraction, robustness, linear probe",
    "vae": "VAEs on binarized MNIST: the ELBO, reparameterization vs score-function gradients, IWAE k=5000 NLL next to Burda et al. (2016)",
    "vqvae": "VQ-VAE on MNIST: 7x7 discrete codes, EMA codebook vs codebook loss, beta sweep; saves the autoencoder for latent diffusion",
    "diffusion_2d": "DDPM on the swiss roll, ring and grid: forward and reverse processes, trajectories, mode coverage beside the GANs",
    "ddpm_mnist": "a DDPM U-Net on MNIST: the forward process of a digit, samples, DDPM 1000 steps vs DDIM 100/50/20/10 (FID, time)",
    "latent_diffusion": "DDPM in the VQ-VAE's 7x7 latent space, decoded: FID and time per sample against pixel-space DDPM",
    "diffusion_objectives": "epsilon, x0 and v prediction, each with and without min-SNR weighting: FID against training steps (not in the tour)",
}

# Experiments the tour runs only when `--only` names them (an hour or more on a CPU even quick).
NOT_IN_TOUR: frozenset[str] = frozenset({"diffusion_objectives"})


def load(name: str):
    """The `Experiment` of `experiments.<name>`; unknown names list the known ones."""
    from experiments._framework import ConfigError

    if name not in REGISTRY:
        raise ConfigError(f"unknown experiment {name!r}; available: {', '.join(REGISTRY)}")
    return importlib.import_module(f"experiments.{name}").EXPERIMENT
