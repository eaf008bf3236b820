# What every config validator shares (config.py and vehicle_config.py):
# the JSON type of a value in words, for messages such as "expected an
# array, got object", and an error list whose entries start with the
# field's path.
#
# A leaf module: it imports nothing, so any validator can use it on the
# panel (MicroPython) and on the host.


def type_name(v):
    """The JSON type of a parsed value, in words."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "value"


def is_number(v):
    """An integer or a float, not a boolean."""
    return not isinstance(v, bool) and isinstance(v, (int, float))


class Errors:
    """Collects "path: message" strings."""

    def __init__(self):
        self.errors = []

    def err(self, path, msg):
        self.errors.append("%s: %s" % (path, msg))
