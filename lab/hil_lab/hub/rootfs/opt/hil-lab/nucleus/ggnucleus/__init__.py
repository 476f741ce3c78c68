"""Greengrass v2 nucleus stand-in for the virtual hubs (standard library + PyYAML only)."""

NUCLEUS_VERSION = "2.12.1"
