"""`python -m vaekit ...`: the vaekit command, as torchrun launches it (`torchrun ... -m vaekit train ...`)."""

import sys

from .cli.main import main

sys.exit(main())
