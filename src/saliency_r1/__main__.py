"""``python -m saliency_r1 ...``: the same as the ``saliency-r1`` command."""

import sys

from .cli.main import main

sys.exit(main())
