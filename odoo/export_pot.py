# Writes the translation templates (.pot) of project addons as Odoo exports them; run through
#   POT_MODULES=mod1,mod2 POT_DIR=odoo odoo-bin shell -d DB --no-http < odoo/export_pot.py
# on a database with the addons installed: each goes to $POT_DIR/<module>/i18n/<module>.pot, or,
# with POT_FLAT=1, to $POT_DIR/<module>.pot (odoo/run_addon_tests.sh does that to check the
# committed templates are up to date). The creation dates are left out, so that an unchanged
# template exports byte for byte the same. `env` is provided by odoo-bin shell.
import io
import os
import re

from odoo.tools.translate import trans_export

for module in filter(None, os.environ["POT_MODULES"].split(",")):
    buffer = io.BytesIO()
    trans_export(False, [module], buffer, "po", env.cr)  # noqa: F821
    text = re.sub(rb'"(POT-Creation-Date|PO-Revision-Date): [^"]*\\n"\n', b"", buffer.getvalue())
    if os.environ.get("POT_FLAT"):
        path = os.path.join(os.environ["POT_DIR"], f"{module}.pot")
    else:
        path = os.path.join(os.environ["POT_DIR"], module, "i18n", f"{module}.pot")
    with open(path, "wb") as f:
        f.write(text)
    print(f"POT {module} {path}")
