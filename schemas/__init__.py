"""The JSON Schemas of every artifact, shipped as package data (this folder is `comfywatchman.schemas`)."""
