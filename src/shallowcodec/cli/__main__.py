"""``python -m shallowcodec.cli``: the ``shallowcodec`` command."""

import sys

from shallowcodec.cli.app import main

sys.exit(main())
