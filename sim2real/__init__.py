"""sim2real: online-imitation-pretrained world models for sim-to-real manipulation."""

__version__ = "0.1.0"
