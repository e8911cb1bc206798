"""No test reaches the internet or the user's model cache: released models resolve to a cache of this run's
own, and downloads to a local port nothing listens on (refused at once), unless a test serves one itself."""

import os
import tempfile

os.environ["SYNCHFORMER_CACHE"] = tempfile.mkdtemp(prefix="synchformer-test-cache-")
os.environ["SYNCHFORMER_MIRROR"] = "http://127.0.0.1:9/"
