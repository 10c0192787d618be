"""Non-finite numbers in JSON: one convention for every command and the checkpoint.

JSON has no NaN or infinity (a bare ``NaN`` token is not JSON, and strict parsers refuse
it), yet a debugger must write them and keep them apart. Like protobuf's JSON mapping, a
non-finite number is written as a string: ``"NaN"``, ``"Infinity"``, ``"-Infinity"``;
every finite number stays a JSON number. Files are then written with
``json.dumps(..., allow_nan=False)``, so a non-finite float that slipped past this module
fails loudly instead of producing invalid JSON.
"""

from __future__ import annotations

import math

NAN = "NaN"
INFINITY = "Infinity"
MINUS_INFINITY = "-Infinity"
_FROM_JSON = {NAN: math.nan, INFINITY: math.inf, MINUS_INFINITY: -math.inf}


def to_json_number(x: float) -> float | str:
    """``x`` as JSON writes it: a finite number as it is, else "NaN", "Infinity" or "-Infinity"."""
    if math.isfinite(x):
        return x
    if math.isnan(x):
        return NAN
    return INFINITY if x > 0 else MINUS_INFINITY


def from_json_number(value: object) -> float:
    """The inverse of ``to_json_number``: a number, or one of the three strings. Anything
    else (a bool, another string, null) raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value in _FROM_JSON:
        return _FROM_JSON[value]
    raise ValueError(f"{value!r} is not a number")
