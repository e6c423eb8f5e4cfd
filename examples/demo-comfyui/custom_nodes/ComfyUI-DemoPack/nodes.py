"""Node classes of ComfyUI-DemoPack.

Plain Python with no third-party imports: the demo never runs a model, and the scanner never imports
this file.
"""

from __future__ import annotations


class DemoColorMatch:
    """Matches the colours of one image to a reference image."""

    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "match"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image_ref": ("IMAGE",),
                "image_target": ("IMAGE",),
                "method": (["mkl", "hm", "reinhard", "mvgd"], {"default": "mkl"}),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05}),
            }
        }

    def match(self, image_ref, image_target, method: str, strength: float) -> tuple:
        """Returns the target image unchanged (stand-in for the real colour transfer)."""
        return (image_target,)


class DemoImageGrid:
    """Lays a batch of images out on a grid."""

    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "grid"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "images": ("IMAGE",),
                "columns": ("INT", {"default": 4, "min": 1, "max": 64}),
                "gap": ("INT", {"default": 0, "min": 0, "max": 256}),
            }
        }

    def grid(self, images, columns: int, gap: int) -> tuple:
        """Returns the batch unchanged (stand-in for the real grid)."""
        return (images,)
