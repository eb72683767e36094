from . import test_counter
from . import test_concurrency
from . import test_tour
from . import test_i18n
