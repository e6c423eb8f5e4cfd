"""The stages of a readiness cycle, one module each, in the order they run."""

ORDER = ("gate", "cache", "intake", "scan", "search", "verify", "report")
# Run only when asked (``--auto-download`` or ``[download] auto_download``), between search and report.
ON_REQUEST = ("download",)
# Stages that share no file (see the catalogue) and run at the same time where the platform allows
# (``comfywatchman.side_by_side``), recorded in this order.
SIDE_BY_SIDE = ("cache", "intake")
