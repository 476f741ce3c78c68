"""Evidence-returning checks: ports, SSH, TLS, MQTT, host state, latency.

A probe touches a device (over a ``Shell`` or the network) and returns a typed,
frozen evidence record. It never asserts: the suites decide, and attach the
evidence (``to_json``) to the report.
"""
