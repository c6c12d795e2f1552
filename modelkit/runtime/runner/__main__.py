"""``python -m modelkit.runtime.runner FD [SERVER_PID]``: the runner program (see ``child.py``)."""

import sys

from modelkit.runtime.runner.child import main

sys.exit(main())
