"""deeplimit: neural networks in the infinite depth-and-width limit."""

from deeplimit.errors import DeeplimitError, DeeplimitWarning

__version__ = "0.1.0"
__all__ = ["DeeplimitError", "DeeplimitWarning", "__version__"]
