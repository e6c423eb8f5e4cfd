"""Facts about a ComfyUI install read from its files: model folders, custom node packs, core node types."""
