"""ComfyUI-DemoPack: two small image nodes used by the comfywatchman demo install.

ComfyUI imports this package at startup and reads the two mappings below; comfywatchman only reads the
source text and never imports it.
"""

from .nodes import DemoColorMatch, DemoImageGrid

NODE_CLASS_MAPPINGS = {
    "DemoColorMatch": DemoColorMatch,
    "DemoImageGrid": DemoImageGrid,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "DemoColorMatch": "Color Match (Demo)",
    "DemoImageGrid": "Image Grid (Demo)",
}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
