"""Runs localstripe (a stateful fake of Stripe's API, a test dependency) for one test run:
`python localstripe_server.py PORT`.

localstripe's own `start()` listens on every interface and pickles its whole store to
/tmp/localstripe.pickle after every write, a file every run on the machine would share; here it
listens on 127.0.0.1 only and keeps its state in memory, for as long as the process lives.
"""

import sys

from aiohttp import web
from localstripe import resources, server


def main() -> None:
    port = int(sys.argv[1])
    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
    web.run_app(server.app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
