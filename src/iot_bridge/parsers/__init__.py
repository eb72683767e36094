"""Parser registry: ``parser_type`` (as Odoo's device config names it) -> :class:`Parser`."""

from iot_bridge.parsers.base import ParseError, Parser, ParserOptions, Reading

PARSERS: dict[str, Parser] = {}

__all__ = ["PARSERS", "ParseError", "Parser", "ParserOptions", "Reading"]
