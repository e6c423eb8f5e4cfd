"""Finding where a missing model can be had: the backend interface, the backends and the decision policy."""
