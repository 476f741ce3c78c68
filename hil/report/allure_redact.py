"""Secrets never reach allure-results: allure-pytest's file writer, redacting.

allure-pytest writes what the test printed, logged and raised (captured stdout/log
attachments, status messages, tracebacks) through its ``AllureFileLogger``. That
writer is swapped for one that redacts every string and every text attachment on
the way to disk, so a run killed halfway leaves only redacted files behind.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from hil.redact import redact, redact_bytes, redact_tree


def _redacting_logger(original: Any) -> Any:
    from allure_commons import hookimpl
    from allure_commons.logger import AllureFileLogger

    class RedactingFileLogger(AllureFileLogger):
        def _report_item(self, item: Any) -> None:
            for field in ("name", "description", "descriptionHtml", "statusDetails", "steps",
                          "parameters", "attachments", "befores", "afters"):
                if hasattr(item, field):
                    _redact_attrs(getattr(item, field))
            super()._report_item(item)  # type: ignore[no-untyped-call]

        @hookimpl
        def report_attached_file(self, source: str, file_name: str) -> None:
            target = Path(self._report_dir) / file_name
            tmp = target.with_name(target.name + ".tmp")
            data = Path(source).read_bytes()
            red = redact_bytes(data)
            if red is data:
                shutil.copy2(source, tmp)
            else:
                tmp.write_bytes(red)
            os.replace(tmp, target)

        @hookimpl
        def report_attached_data(self, body: str | bytes, file_name: str) -> None:
            super().report_attached_data(redact(body) if isinstance(body, str) else redact_bytes(body),
                                         file_name)  # type: ignore[no-untyped-call]

    logger = RedactingFileLogger.__new__(RedactingFileLogger)
    logger.__dict__.update(original.__dict__)  # same folder, no second clean-up of it
    return logger


def _redact_attrs(node: Any) -> None:
    """Redact string attributes of allure's attrs model objects in place."""
    if isinstance(node, list):
        for v in node:
            _redact_attrs(v)
        return
    fields = getattr(type(node), "__attrs_attrs__", None)
    if fields is None:
        return
    for f in fields:
        value = getattr(node, f.name)
        if isinstance(value, str):
            setattr(node, f.name, redact(value))
        elif isinstance(value, list | dict):
            if isinstance(value, dict):
                setattr(node, f.name, redact_tree(value))
            else:
                for v in value:
                    _redact_attrs(v)
                setattr(node, f.name, [redact(v) if isinstance(v, str) else v for v in value])
        else:
            _redact_attrs(value)


def install_redacting_writer(config: Any) -> bool:
    """Swap allure-pytest's results writer for a redacting one (after allure configured it)."""
    try:
        import allure_commons
        from allure_commons.logger import AllureFileLogger
    except ImportError:
        return False
    pm = allure_commons.plugin_manager
    for plugin in list(pm.get_plugins()):
        if type(plugin) is AllureFileLogger:
            redacting = _redacting_logger(plugin)
            pm.unregister(plugin)
            pm.register(redacting)

            def restore(original: Any = plugin, replacement: Any = redacting) -> None:
                # allure-pytest's own clean-up unregisters the writer it made
                pm.unregister(replacement)
                pm.register(original)

            config.add_cleanup(restore)
            return True
    return False
