"""comfywatchman: keeps a ComfyUI install ready for every workflow its user has saved."""

__version__ = "0.1.0"
