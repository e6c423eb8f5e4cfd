"""ComfyUI-OldPack (disabled: ComfyUI-Manager renamed the folder to *.disabled, so ComfyUI skips it)."""


class OldSharpen:
    """Unsharp-mask sharpening, superseded by the core ImageSharpen node."""

    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "sharpen"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE",),
                "radius": ("INT", {"default": 1, "min": 1, "max": 31}),
                "alpha": ("FLOAT", {"default": 0.35, "min": 0.0, "max": 5.0, "step": 0.05}),
            }
        }

    def sharpen(self, image, radius: int, alpha: float) -> tuple:
        """Returns the image unchanged (stand-in)."""
        return (image,)


NODE_CLASS_MAPPINGS = {"OldSharpen": OldSharpen}
NODE_DISPLAY_NAME_MAPPINGS = {"OldSharpen": "Sharpen (old)"}
