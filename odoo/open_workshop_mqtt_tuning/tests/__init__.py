from . import test_suggest
from . import test_tuning
