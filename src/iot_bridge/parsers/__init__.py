"""Parser registry: ``parser_type`` (as Odoo's device config names it) -> :class:`Parser`.

``shelly_pm_mini_g3`` and ``shelly_gen2`` are the same parser: the PM Mini Gen3 / Plug PM Gen3
publish ``pm1:N`` where other Gen2+ devices publish ``switch:N``, and both are understood.
"""

from iot_bridge.errors import ParseError
from iot_bridge.parsers import generic, shelly_gen1, shelly_gen2, tasmota
from iot_bridge.parsers.base import Parser, ParserOptions, Reading

PARSERS: dict[str, Parser] = {
    "shelly_pm_mini_g3": shelly_gen2.PARSER,
    "shelly_gen2": shelly_gen2.PARSER,
    "shelly_gen1": shelly_gen1.PARSER,
    "tasmota": tasmota.PARSER,
    "generic": generic.PARSER,
}

__all__ = ["PARSERS", "ParseError", "Parser", "ParserOptions", "Reading"]
