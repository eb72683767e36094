from . import test_billing
from . import test_concurrency
from . import test_tour
from . import test_i18n
