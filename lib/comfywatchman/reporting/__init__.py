"""The master status report: building it and rendering it for people."""
