"""``python -m monitor`` is the ``vqa-monitor`` command."""
import sys

from monitor.cli import main

sys.exit(main())
