"""The ground floor: pure torch building blocks (no AnnData, no registry, no training loops).

``layers/`` (the conditional GAN's FiLM, feature attention, condition embedding, trunk, cell
groups), ``denoisers/`` (diffusion denoisers and their embeddings), ``vae_module`` (the scGen VAE
network), ``losses`` (likelihoods and divergences), ``pca`` (``fit_pca``) and ``group_means``.
Submodules are imported on demand, so ``import virtualcell.nn`` stays light.
"""
