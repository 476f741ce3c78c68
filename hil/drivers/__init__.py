"""Drivers: one class per way of touching a device."""
