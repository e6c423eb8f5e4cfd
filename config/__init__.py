"""The default config, shipped as package data (this folder is `comfywatchman.defaults`)."""
