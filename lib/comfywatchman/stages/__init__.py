"""The seven stages of a readiness cycle, one module each, in the order they run."""

ORDER = ("gate", "cache", "intake", "scan", "search", "verify", "report")
