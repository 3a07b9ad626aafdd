"""``python -m semcomm.cli``."""
import sys

from semcomm.cli import main

sys.exit(main())
