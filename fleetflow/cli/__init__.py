"""The ``fleetflow`` command, on top of the flows: ``fleetflow --help`` lists its commands."""

from fleetflow.cli._main import main

__all__ = ["main"]
