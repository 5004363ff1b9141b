"""``python -m django_trakt.testing``: run an emulated Trakt until Ctrl-C.

Seeds one app, the demo user(s) and a demo watchlist, then prints the URL to put
in the site's Trakt host settings (auth, API and web all point at it).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from .demo import seed_demo_user
from .emulator import TraktEmulator

logger = logging.getLogger(__name__)

DEFAULT_REDIRECT_URIS = (
    "http://127.0.0.1:8000/accounts/trakt/login/callback/",
    "http://localhost:8000/accounts/trakt/login/callback/",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m django_trakt.testing", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8765, help="port, 0 for any free one (default: %(default)s)")
    parser.add_argument("--public-url", help="URL to advertise, if not http://HOST:PORT (e.g. behind a proxy)")
    parser.add_argument("--client-id", default="django-trakt-demo", help="the app's client id (default: %(default)s)")
    parser.add_argument("--client-secret", default="django-trakt-demo-secret", help="the app's client secret")
    parser.add_argument(
        "--redirect-uri",
        action="append",
        dest="redirect_uris",
        metavar="URI",
        help=f"registered redirect URI, exact match; repeat for more (default: {', '.join(DEFAULT_REDIRECT_URIS)})",
    )
    parser.add_argument("--app-name", default="Example app", help="name on the consent page (default: %(default)s)")
    parser.add_argument(
        "--demo-user",
        action="append",
        dest="demo_users",
        metavar="USERNAME",
        help="a user with a demo watchlist; repeat for more (default: demo)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--device-interval", type=float, default=5, help="device-flow polling interval (default: 5)")
    parser.add_argument("--no-pkce", action="store_true", help="accept authorize requests without PKCE")
    parser.add_argument("--verbose", "-v", action="store_true", help="log every request")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(message)s")

    emulator = TraktEmulator()
    emulator.latency = args.latency
    emulator.device_interval = args.device_interval
    emulator.require_pkce = not args.no_pkce
    emulator.add_app(
        args.client_id,
        args.client_secret,
        name=args.app_name,
        redirect_uris=args.redirect_uris or DEFAULT_REDIRECT_URIS,
    )
    for username in args.demo_users or ["demo"]:
        seed_demo_user(emulator, username)

    def stop_on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started in the background
        signal.signal(signum, stop_on_signal)
    server = emulator.serve(args.host, args.port, public_url=args.public_url)
    try:
        # Inside the try: a signal may arrive as soon as the first line is out.
        print(f"Trakt emulator listening on {server.url}", flush=True)
        print(f"  client id: {args.client_id}; users: {', '.join(u.username for u in emulator.users)}", flush=True)
        server.wait()
    except KeyboardInterrupt:
        logger.info("Interrupted, stopping")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
