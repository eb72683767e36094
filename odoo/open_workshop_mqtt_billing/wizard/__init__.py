from . import session_invoice_wizard
