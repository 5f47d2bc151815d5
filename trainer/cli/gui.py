"""``trainer gui``: the Qt GUI (trainer/gui, docs/GUI.md)."""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any, Callable, Mapping, Optional

import click

from trainer.cli import errors

# The X11 libraries Qt's xcb platform plugin loads that a stock Debian/Ubuntu lacks:
# (Debian package, soname). PySide6's wheels bring the rest of Qt.
XCB_LIBRARIES = (("libxcb-cursor0", "libxcb-cursor.so.0"),
                 ("libxcb-icccm4", "libxcb-icccm.so.4"),
                 ("libxcb-keysyms1", "libxcb-keysyms.so.1"))


def uses_xcb(env: Mapping[str, str], platform: str = sys.platform) -> bool:
    """Whether Qt will start its xcb (X11) platform plugin: on Linux, when
    QT_QPA_PLATFORM names xcb first, or is unset outside a Wayland session."""
    if not platform.startswith("linux"):
        return False
    wanted = env.get("QT_QPA_PLATFORM", "").strip()
    if wanted:
        return wanted.split(";")[0].split(":")[0] == "xcb"
    return not env.get("WAYLAND_DISPLAY")


def missing_xcb_libraries(load: Callable[[str], Any] = ctypes.CDLL) -> list[str]:
    """The Debian packages of XCB_LIBRARIES whose library ``load`` cannot open."""
    missing = []
    for package, soname in XCB_LIBRARIES:
        try:
            load(soname)
        except OSError:
            missing.append(package)
    return missing


def check_platform(env: Mapping[str, str], load: Callable[[str], Any] = ctypes.CDLL) -> None:
    """Refuse, naming them, when xcb will be used and its libraries are missing (Qt
    would abort inside its plugin loader with a less helpful message)."""
    if not uses_xcb(env):
        return
    missing = missing_xcb_libraries(load)
    if missing:
        raise errors.CliError(
            f"the GUI's X11 (xcb) platform needs libraries that are not installed: "
            f"{', '.join(missing)}; install them with `sudo apt-get install "
            f"{' '.join(missing)}` (or set QT_QPA_PLATFORM, e.g. wayland or offscreen)")


@click.command("gui")
@click.option("--address", default=None, metavar="HOST:PORT",
              help="Gateway address (default: $TRAINER_GATEWAY_ADDR or 127.0.0.1:50055).")
@click.option("--token", default=None,
              help="Bearer token (default: $TRAINER_GATEWAY_TOKEN or "
                   "$TRAINER_HOME/gateway.token).")
def gui(address: Optional[str], token: Optional[str]) -> None:
    """Open the Qt GUI: the runs table (live over WatchRuns), the selected run's
    metrics (several runs compared), flags, videos, log and artifacts, submit and
    cancel, and the services' health. It talks to the gateway only (the public gRPC
    API); see docs/GUI.md."""
    check_platform(os.environ)
    from trainer.gui.app import main
    sys.exit(main(address, token))
