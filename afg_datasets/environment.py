"""Is the numeric stack (torch, torchvision, the attack backends) importable and matched? A broken
install is named in one line with how to reinstall, instead of a dependency's traceback."""

from __future__ import annotations

import importlib
import traceback

from afg_datasets.errors import first_line

REINSTALL_TORCH = (
    "reinstall both from one index: pip install --force-reinstall torch torchvision "
    "(on a machine without a GPU add --index-url https://download.pytorch.org/whl/cpu)"
)
REINSTALL_BACKEND = "reinstall it: pip install --force-reinstall --no-deps {name}"


def raised_during_import(err: BaseException) -> bool:
    """Whether `err` came out of importing a module: raised by a module's top-level code (a
    `<module>` frame; Python drops its own import machinery's frames from the traceback)."""
    frames = traceback.extract_tb(err.__traceback__)
    return isinstance(err, ImportError) or any(frame.name == "<module>" for frame in frames)


def stack_problem() -> str | None:
    """One line naming what is broken in torch / torchvision / advertorch, or None."""
    for name in ("torch", "torchvision"):
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - a broken install raises any type on import
            return f"{name} cannot be imported ({first_line(err)[:200]}): {REINSTALL_TORCH}"
    mismatch = _torchvision_mismatch()
    if mismatch:
        return f"{mismatch}: {REINSTALL_TORCH}"
    from afg_datasets.attacks import BACKENDS

    for name, load in BACKENDS.items():
        try:
            load()
        except Exception as err:  # noqa: BLE001
            hint = REINSTALL_BACKEND.format(name=name)
            return f"{name} cannot be imported ({first_line(err)[:200]}): {hint}"
    return None


def _torchvision_mismatch() -> str | None:
    """torch 2.M pairs with torchvision 0.(M+15), and their builds (+cpu, +cu130) must agree."""
    import torch
    import torchvision
    from packaging.version import InvalidVersion, Version

    shown = f"torchvision {torchvision.__version__} does not match torch {torch.__version__}"
    try:
        ours, vision = Version(str(torch.__version__)), Version(str(torchvision.__version__))
    except InvalidVersion:
        return None  # a source build names itself otherwise: nothing to compare
    if (ours.major, vision.major) == (2, 0) and vision.minor != ours.minor + 15:
        return shown
    if ours.local and vision.local and ours.local != vision.local:
        return shown
    return None
