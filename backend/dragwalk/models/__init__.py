"""Generator adapters behind one interface, and the loaders that build them."""

from .base import DragVariables, Generator, LayerInfo, Latent, ModelError, Settings, Synthesis
from .registry import DEFAULT_MODEL, list_models, load_model, save_model

__all__ = ["DEFAULT_MODEL", "DragVariables", "Generator", "LayerInfo", "Latent", "ModelError",
           "Settings", "Synthesis", "list_models", "load_model", "save_model"]
