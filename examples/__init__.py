"""The demo install `make cycle` runs on, shipped as package data (this folder is `comfywatchman.examples`)."""
