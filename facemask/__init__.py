"""facemask: mask / gender / age face classifiers (18 classes) scored by macro F1."""

__version__ = "0.1.0"
