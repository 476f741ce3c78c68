"""Power-driver registry: ``power: {driver: NAME, ...}`` in devices.yaml -> a class.

Each driver declares a pydantic ``Params`` model for its parameters, so a typo in
devices.yaml is reported with the device and the field, before any device is touched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from hil.drivers.base import PowerOutlet
from hil.errors import InventoryError
from hil.inventory import Device, PowerSpec
from hil.timeouts import DEFAULT_TIMEOUTS, Timeouts


class PowerDriver(Protocol):
    """What a registered class offers: a params model and a constructor."""

    Params: ClassVar[type[BaseModel]]

    def __init__(self, device: str, params: Any, timeouts: Timeouts) -> None: ...


_D = TypeVar("_D", bound=type[Any])

POWER_DRIVERS: dict[str, type[PowerDriver]] = {}


def register_power_driver(name: str) -> Callable[[_D], _D]:
    def deco(cls: _D) -> _D:
        if not (isinstance(getattr(cls, "Params", None), type)
                and issubclass(cls.Params, BaseModel)):
            raise TypeError(f"power driver {cls.__name__} needs a pydantic Params model")
        POWER_DRIVERS[name] = cls
        return cls
    return deco


def power_problems(spec: PowerSpec) -> list[tuple[tuple[str, ...], str]]:
    """(field under ``power``, message) for every problem of ``spec``; [] when the driver takes it.

    The inventory calls this while loading, so a typo is reported before anything runs.
    """
    cls = POWER_DRIVERS.get(spec.driver)
    if cls is None:
        known = ", ".join(sorted(POWER_DRIVERS))
        return [(("driver",), f"unknown power driver {spec.driver!r}; known: {known}")]
    try:
        cls.Params.model_validate(spec.params)
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown parameter for power driver {spec.driver!r} (typo?)"
            elif err["type"] == "missing":
                msg = f"required by power driver {spec.driver!r}"
            out.append((tuple(str(p) for p in err["loc"]), msg))
        return out
    return []


def make_power(device: Device, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> PowerOutlet:
    """The device's outlet; InventoryError naming device and field for bad settings."""
    spec = device.power
    if spec is None:
        raise InventoryError("no power outlet configured", device=device.name, field="power")
    problems = power_problems(spec)
    if problems:
        field, msg = problems[0]
        raise InventoryError(msg, device=device.name, field=".".join(("power", *field)))
    cls = POWER_DRIVERS[spec.driver]
    outlet = cls(device.name, cls.Params.model_validate(spec.params), timeouts)
    assert isinstance(outlet, PowerOutlet)
    return outlet
