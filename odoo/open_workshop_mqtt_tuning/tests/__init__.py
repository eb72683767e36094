from . import test_suggest
from . import test_tuning
from . import test_i18n
