"""``python -m display`` is the same as the ``room-display`` command."""

from display.cli import main

raise SystemExit(main())
