"""moto's server with one request at a time.

DynamoDB applies every write, condition and transaction atomically per item; moto's threaded
server does not (two concurrent conditional updates of one item can both read the old value).
Serializing requests gives the tests DynamoDB's atomicity, so concurrency tests exercise our
code's guarantees instead of moto's races. Our own multi-request sequences still interleave.

Usage: python3 scripts/moto_server.py PORT   (binds 127.0.0.1 only)
"""

import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def main() -> None:
    port = int(sys.argv[1])
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ, start_response):
        with lock:
            body = app(environ, start_response)
            try:
                return [b"".join(body)]
            finally:
                close = getattr(body, "close", None)
                if close:
                    close()

    run_simple("127.0.0.1", port, serialized, threaded=True)


if __name__ == "__main__":
    main()
