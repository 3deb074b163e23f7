"""``python -m tests.keras_scripts``: the suite's table (see run.py)."""
import sys

from tests.keras_scripts.run import main

sys.exit(main())
