"""The root of fleetflow's errors: each says what is wrong and how to fix it."""


class FleetflowError(Exception):
    """An error meant for the person running fleetflow: one clear line, no traceback needed."""
