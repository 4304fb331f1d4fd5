"""``python -m dhc`` is the ``dhc`` command."""

import sys

from dhc.cli import main

sys.exit(main())
