"""Reading workflow files and the requirements they state."""
