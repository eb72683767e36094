from . import test_badge
from . import test_attribution
from . import test_concurrency
from . import test_tour
from . import test_i18n
