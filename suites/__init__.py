"""Device suites (smoke, functional, latency, security), run with the root conftest's plugins.

A package so that suite modules import their shared label helpers as ``suites.<suite>.x``
and same-named test files in different suites do not collide.
"""
