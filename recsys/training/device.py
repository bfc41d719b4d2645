"""The Trainer's device helpers: the one resolver lives in :mod:`recsys.runtime`."""

from recsys.runtime import available_devices, resolve_device

__all__ = ["available_devices", "resolve_device"]
