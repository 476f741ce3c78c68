"""Root conftest: nothing to load.

The harness's pytest plugin comes with the installed package (the ``pytest11`` entry
point ``hil`` -> hil_pytest.plugin, which lists its parts), here as in any repository
that installs it.
"""
