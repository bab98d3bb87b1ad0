"""Small data files the environments load: density maps (``densities/``), coverage maps and the MuJoCo point
robot (``coverage/``), and CARLA routes (``routes/``). Installed as ``morl.assets``.

>>> from morl.assets import asset_path
>>> asset_path("densities", "ring.npy").is_file()
True
"""

from pathlib import Path

__all__ = ["ASSETS_DIR", "asset_path"]

#: The folder of the asset files (the source checkout's ``assets/``, or the installed ``morl/assets``).
ASSETS_DIR = Path(__file__).resolve().parent


def asset_path(*parts: str) -> Path:
    """The path of an asset file or folder, e.g. ``asset_path("routes", "town01_route.json")``."""
    return ASSETS_DIR.joinpath(*parts)
