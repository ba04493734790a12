"""``python -m fathom_sandbox --port N``: serve the sandbox until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .server import Config, make_server


def main(argv: list[str] | None = None) -> int:
    defaults = Config()
    parser = argparse.ArgumentParser(prog="python -m fathom_sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--rate-limit", type=int, default=defaults.rate_limit)
    parser.add_argument("--rate-window", type=float, default=defaults.rate_window)
    parser.add_argument("--download-limit", type=int, default=defaults.download_limit)
    parser.add_argument("--page-size", type=int, default=defaults.page_size)
    parser.add_argument(
        "--processing-polls",
        type=int,
        default=defaults.processing_polls,
        help="polls answered `processing` before a download completes",
    )
    parser.add_argument("--signed-url-ttl", type=float, default=defaults.signed_url_ttl)
    parser.add_argument("--download-ttl", type=float, default=defaults.download_ttl)
    parser.add_argument(
        "--callback-delay",
        type=float,
        default=defaults.callback_delay,
        help="seconds before a download's destination_url is POSTed",
    )
    parser.add_argument("--no-seed", action="store_true", help="start with no keys at all")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    config = Config(
        rate_limit=args.rate_limit,
        rate_window=args.rate_window,
        download_limit=args.download_limit,
        page_size=args.page_size,
        processing_polls=args.processing_polls,
        signed_url_ttl=args.signed_url_ttl,
        download_ttl=args.download_ttl,
        callback_delay=args.callback_delay,
    )
    server = make_server(
        args.host, args.port, config=config, seed=not args.no_seed, verbose=args.verbose
    )
    host, port = server.server_address[:2]
    # SIGTERM from a supervisor (honcho, tests) stops the server like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"fathom sandbox listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
