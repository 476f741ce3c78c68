"""Allure wiring: every ``hil.steps`` step becomes an Allure step.

A step shows its title (the command), its parameters, its exit status, its duration
(start/stop) and its attachments (stdout/stderr when non-empty, the error on failure).
Only steps on the registering thread are forwarded: Allure's reporter keeps one stack
of open items and is not thread-safe.
"""

from __future__ import annotations

import threading
from typing import Any
from uuid import uuid4

from hil.steps import Step, add_listener, remove_listener


class StepFailed(Exception):
    """Stands for the exception a step ended with (Allure wants exc_type/exc_val)."""


class AllureSteps:
    """A ``hil.steps`` listener that forwards steps to ``allure_commons``."""

    def __init__(self) -> None:
        import allure_commons

        self._hooks = allure_commons.plugin_manager.hook
        self._pm = allure_commons.plugin_manager
        self._thread = threading.get_ident()
        self._open: dict[int, str] = {}

    def install(self) -> AllureSteps:
        add_listener(self)
        return self

    def uninstall(self) -> None:
        remove_listener(self)

    def __call__(self, event: str, st: Step) -> None:
        if threading.get_ident() != self._thread:
            return
        if event == "start":
            uuid = uuid4().hex
            self._open[id(st)] = uuid
            params = dict(st.params)
            if st.device:
                params.setdefault("device", st.device)
            self._hooks.start_step(uuid=uuid, title=st.title, params=params)
            return
        if id(st) not in self._open:
            return
        uuid = self._open.pop(id(st))
        if st.exit_status is not None:
            self._add_parameter(uuid, "exit status", str(st.exit_status))
        self._add_parameter(uuid, "duration", f"{(st.duration or 0.0) * 1000:.1f} ms")
        for name, text in st.attachments.items():
            self._attach(name, text)
        if st.error:
            self._attach("error", st.error)
            err = StepFailed(st.error)
            self._hooks.stop_step(uuid=uuid, exc_type=StepFailed, exc_val=err, exc_tb=None)
        else:
            self._hooks.stop_step(uuid=uuid, exc_type=None, exc_val=None, exc_tb=None)

    def _attach(self, name: str, text: str) -> None:
        import allure_commons.types

        self._hooks.attach_data(body=text, name=name,
                                attachment_type=allure_commons.types.AttachmentType.TEXT, extension="txt")

    def _add_parameter(self, uuid: str, name: str, value: str) -> None:
        # a step's result is only known at its end; allure's hooks take parameters at start,
        # so append to the open step result of the reporter that holds it
        from allure_commons.model2 import Parameter

        for plugin in self._pm.get_plugins():
            reporter: Any = getattr(plugin, "allure_logger", None)
            item = reporter.get_item(uuid) if reporter is not None else None
            if item is not None and hasattr(item, "parameters"):
                item.parameters.append(Parameter(name=name, value=value))


def attach_text(name: str, text: str) -> None:
    """Attach text to the current Allure test/step (no-op without an Allure listener)."""
    if not text:
        return
    import allure
    import allure_commons.types

    allure.attach(text, name=name, attachment_type=allure_commons.types.AttachmentType.TEXT)


def label(name: str, value: str) -> None:
    import allure

    allure.dynamic.label(name, value)  # type: ignore[no-untyped-call]
