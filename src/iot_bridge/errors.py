"""Every error the bridge raises on purpose, under one base class (in the manner of aiomqtt).

A caller that must survive whatever one message, one device entry or one peer does catches
:class:`BridgeError` (or one branch of it); anything else escaping is a bug. The classes live
here, not next to the code that raises them, so that catching never needs an import of the
module that failed.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of the bridge's own errors."""


# -- configuration ------------------------------------------------------------------------------


class SettingsError(BridgeError, ValueError):
    """One environment setting is wrong; the message starts with the variable's name."""


class ConfigError(BridgeError, ValueError):
    """A device entry (or the whole document) that cannot be used; the message says why."""


class StartupError(BridgeError):
    """The service cannot start (a busy port, an unusable data directory, no device list it
    can read); the command line prints the message as one line and exits 2."""


class ConfigUnavailable(BridgeError):
    """No device list could be had from the source right now; the message says why.
    ``auth`` is set when Odoo refused the token (401)."""

    def __init__(self, message: str, *, auth: bool = False) -> None:
        super().__init__(message)
        self.auth = auth


# -- input ----------------------------------------------------------------------------------------


class ParseError(BridgeError, ValueError):
    """A payload or topic a parser cannot turn into a reading; the only error parsers raise."""


class EventError(BridgeError, ValueError):
    """An event document that does not follow the Unified Event Schema v1."""


class RecordingError(BridgeError, ValueError):
    """A line of a recording that is not ``{"t": number, "topic": str, "payload": str}``."""


# -- MQTT -----------------------------------------------------------------------------------------


class MqttError(BridgeError):
    """Base of the MQTT errors."""


class ProtocolError(MqttError):
    """The peer sent something that is not MQTT 3.1.1 as we speak it."""


class ConnectRefused(MqttError):
    """The broker answered CONNACK with a refusal (bad credentials, not authorised, ...)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"broker refused the connection: {reason}")
        self.code = code


class ConnectionLost(MqttError):
    """The connection ended (network error, keepalive expired, broker closed it)."""


class BrokerError(BridgeError, RuntimeError):
    """A private mosquitto (demo, tests, benchmarks) could not be started."""


# -- storage --------------------------------------------------------------------------------------


class StoreError(BridgeError):
    """The store cannot be written (disk full, read-only, corrupt); the message says which."""


# -- Odoo -----------------------------------------------------------------------------------------


class OdooError(BridgeError):
    """Base of the errors talking to Odoo."""


class OdooUnavailable(OdooError):
    """Transient: 429, 5xx, a timeout, a connection error, or any answer that is not one of the
    contract's (a proxy's HTML page, a WAF's 403). ``status`` is the HTTP status when there was
    an answer, ``retry_after`` what the server asked for. The message is a status code and a
    short reason, never the body."""

    def __init__(
        self, message: str, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class OdooTooLarge(OdooUnavailable):
    """413: the request body was over a limit (Odoo's or a proxy's); a smaller batch may pass."""


class OdooAuthError(OdooError):
    """401: the token was refused. Events are kept; an operator has to fix the token."""
