"""Thing names: how a device serial number becomes its AWS IoT thing name, and what a valid name is.

The rule (documented in docs/provisioning.md):
    serial  = 1-124 characters of [A-Za-z0-9_-]   (anything else is rejected, never silently rewritten)
    thing   = "anc-" + serial.lower()              e.g. SN-000123 -> anc-sn-000123
A thing name must satisfy AWS IoT's rule, [a-zA-Z0-9:_-]{1,128}; the thing name is also the certificate
CN, the MQTT client id and username, and the directory name of the device in the fleet home.
"""

from __future__ import annotations

import re

THING_PREFIX = "anc-"
SERIAL_MAX_CHARS = 128 - len(THING_PREFIX)
_SERIAL = re.compile(r"^[A-Za-z0-9_-]+$")
_THING_NAME = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")


class InvalidNameError(ValueError):
    """A serial number or thing name that breaks the rules; the message names the value and the rule."""


def validate_serial(serial: str) -> str:
    """Return `serial` unchanged when it is 1-124 characters of [A-Za-z0-9_-]; else InvalidNameError."""
    if not serial:
        raise InvalidNameError("serial: empty (allowed: 1-124 characters of A-Z a-z 0-9 _ -)")
    if len(serial) > SERIAL_MAX_CHARS:
        raise InvalidNameError(
            f"serial: {len(serial)} characters is longer than the {SERIAL_MAX_CHARS} allowed"
        )
    if not _SERIAL.match(serial):
        bad = sorted({c for c in serial if not (c.isascii() and (c.isalnum() or c in "_-"))})
        raise InvalidNameError(
            f"serial: {serial!r} contains {''.join(bad)!r} (allowed: 1-124 characters of A-Z a-z 0-9 _ -)"
        )
    return serial


def validate_thing_name(name: str) -> str:
    """Return `name` unchanged when it is a valid AWS IoT thing name ([a-zA-Z0-9:_-], 1-128 chars)."""
    if not isinstance(name, str) or not _THING_NAME.match(name):
        raise InvalidNameError(
            f"thing name: {name!r} is not valid (allowed: 1-128 characters of a-z A-Z 0-9 : _ -)"
        )
    return name


def thing_name_from_serial(serial: str) -> str:
    """`anc-` + the lowercased serial, after validating the serial (InvalidNameError otherwise)."""
    return validate_thing_name(THING_PREFIX + validate_serial(serial).lower())
