"""Log formatting. Django sets the process time zone to TIME_ZONE; logs stay in UTC so
that web, worker and database logs line up at 3 a.m. whatever the business zone."""

import logging
import time


class UTCFormatter(logging.Formatter):
    converter = time.gmtime
