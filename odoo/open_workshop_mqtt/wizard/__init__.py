from . import bridge_token_wizard
