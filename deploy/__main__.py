"""`python -m deploy --bundle BUNDLE ...`: the streaming daemon (same as `fog-daemon`)."""
import sys

from deploy.daemon import main

sys.exit(main(prog="python -m deploy"))
