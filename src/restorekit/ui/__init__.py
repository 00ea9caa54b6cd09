"""The local web UI (``restorekit ui``): upload an image or pick a sample, choose a task and model,
run it, compare before and after, and download the result in its original bit depth.

It is a standard-library HTTP server with a plain HTML/JS page (no extra packages, nothing fetched
from the internet); see ``docs/ui.md``. ``app`` holds the verb, ``server`` the HTTP routes and
``jobs`` the model catalogue and the restore runs.
"""

from __future__ import annotations

from .app import create_server

__all__ = ["create_server"]
