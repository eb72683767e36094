from . import test_models
from . import test_ingest
from . import test_controllers
from . import test_concurrency
from . import test_retention
