"""``python -m display.intake.feishu -c CONFIG``: run the child, then leave at once."""

from __future__ import annotations

import logging
import os

from display.intake.feishu.child import main

if __name__ == "__main__":
    code = main()
    logging.shutdown()
    # The SDK's loop thread cannot be stopped; leave without waiting for it.
    os._exit(code)
