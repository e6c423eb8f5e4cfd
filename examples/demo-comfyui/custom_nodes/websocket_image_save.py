"""Single-file custom node, like the one ComfyUI ships in custom_nodes/: sends images over the websocket.

A module file (not a package) is a custom node source too: ComfyUI imports every *.py placed directly in
custom_nodes/.
"""


class SaveImageWebsocket:
    """Sends each image to the websocket client instead of writing it to disk."""

    CATEGORY = "api node/image"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"images": ("IMAGE",)}}

    def save_images(self, images) -> dict:
        """Returns an empty UI result (stand-in)."""
        return {}

    @classmethod
    def IS_CHANGED(cls, images) -> float:
        return 0.0


NODE_CLASS_MAPPINGS = {
    "SaveImageWebsocket": SaveImageWebsocket,
}
