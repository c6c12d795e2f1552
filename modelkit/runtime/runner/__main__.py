"""``python -m modelkit.runtime.runner FD``: the runner program (see ``child.py``)."""

import sys

from modelkit.runtime.runner.child import main

sys.exit(main())
