"""Which device runs the model. PyTorch is imported only when a question needs it, so reading
a saved choice that is not the GPU costs nothing at start."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def gpu_present() -> bool:
    """Whether a CUDA GPU can run the model here."""
    import torch

    return torch.cuda.is_available()


def usable_device(requested: str) -> tuple[str, str | None]:
    """The device to run on for a saved choice, and a note for the person when the choice cannot
    be honoured: a GPU chosen on a computer without one (or whose driver is gone) runs on the
    CPU instead of failing every search."""
    if requested == "cuda" and not gpu_present():
        return "cpu", ("No CUDA GPU was found on this computer, so the model runs on the CPU "
                       "(Settings → Model → Run the model on)")
    return requested, None


def pick_device(device: str = "auto") -> torch.device:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        from ..errors import ModelLoadError

        raise ModelLoadError("device 'cuda' was asked for, but no CUDA GPU is available")
    return torch.device(device)
