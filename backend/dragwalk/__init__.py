"""dragwalk: drag and walk editing of GAN images, interactive or headless."""

from .models import DEFAULT_MODEL, Generator, Latent, list_models, load_model

__version__ = "0.1.0"
__all__ = ["DEFAULT_MODEL", "Generator", "Latent", "list_models", "load_model", "__version__"]
