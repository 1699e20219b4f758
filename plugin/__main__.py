"""Allows ``python -m simdev.plugin``."""

import sys

from simdev.plugin.main import main

sys.exit(main())
