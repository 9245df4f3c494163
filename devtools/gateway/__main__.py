"""``python -m devtools.gateway``: serve a Chalice app's WebSocket API in the foreground.

Prints one ``Serving ws://... management http://...`` line on stdout once
ready (with the real port when ``--port 0``), logs requests on stderr, and
on SIGINT/SIGTERM closes every connection (running ``$disconnect``) before
exiting.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from .appload import GatewayConfigError
from .limits import Limits, LimitsError
from .server import LocalGateway
from ..signals import stop_event


def _key_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return name, value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.gateway",
        description="Local API Gateway WebSocket API for a Chalice app.",
    )
    parser.add_argument("--project-dir", default=".", help="Chalice project directory (default: cwd)")
    parser.add_argument("--app-module", default="app", help="module defining `app` (default: app)")
    parser.add_argument("--stage", default="dev", help="Chalice stage and URL path (default: dev)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument(
        "--authorizer",
        default="ws_authorizer",
        help="lambda_function name of the REQUEST authorizer; '' for none (default: ws_authorizer)",
    )
    parser.add_argument("--idle-timeout", type=float, default=Limits.idle_timeout, help="seconds")
    parser.add_argument("--max-lifetime", type=float, default=Limits.max_lifetime, help="seconds")
    parser.add_argument("--max-message-bytes", type=int, default=Limits.max_message_bytes)
    parser.add_argument(
        "--write-timeout",
        type=float,
        default=Limits.write_timeout,
        help="seconds a write may wait on a client that is not reading before it is dropped",
    )
    parser.add_argument(
        "--max-outbox-bytes",
        type=int,
        default=Limits.max_outbox_bytes,
        help="per-connection outgoing queue; a POST over it answers 429",
    )
    parser.add_argument(
        "--max-inbox-messages",
        type=int,
        default=Limits.max_inbox_messages,
        help="per-connection queue of messages awaiting a handler; over it the connection closes (1013)",
    )
    parser.add_argument("--max-inbox-bytes", type=int, default=Limits.max_inbox_bytes)
    parser.add_argument(
        "--max-header-bytes",
        type=int,
        default=Limits.max_header_bytes,
        help="upgrade request headers, combined; over it the answer is 431",
    )
    parser.add_argument(
        "--post-latency-ms",
        type=float,
        default=0.0,
        help="added latency per @connections POST, for benchmarks (default: 0)",
    )
    parser.add_argument(
        "--env-from-config",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="load .chalice/config.json environment_variables for the stage (default: on)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="environment override for the app (repeatable)",
    )
    parser.add_argument(
        "--workers", type=int, default=32, help="thread pool for message handlers and $disconnect"
    )
    parser.add_argument(
        "--connect-workers", type=int, default=16, help="thread pool for the authorizer and $connect"
    )
    parser.add_argument(
        "--schedule-interval",
        type=float,
        default=None,
        help="seconds between runs of every @app.schedule function, instead of each one's rate "
        "(tests; default: the rates, or LOCAL_GATEWAY_SCHEDULE_INTERVAL)",
    )
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    gateway = LocalGateway(
        args.project_dir,
        app_module=args.app_module,
        stage=args.stage,
        host=args.host,
        port=args.port,
        authorizer=args.authorizer or None,
        limits=Limits(
            max_message_bytes=args.max_message_bytes,
            idle_timeout=args.idle_timeout,
            max_lifetime=args.max_lifetime,
            post_latency=args.post_latency_ms / 1000.0,
            write_timeout=args.write_timeout,
            max_outbox_bytes=args.max_outbox_bytes,
            max_inbox_messages=args.max_inbox_messages,
            max_inbox_bytes=args.max_inbox_bytes,
            max_header_bytes=args.max_header_bytes,
        ),
        env_from_config=args.env_from_config,
        env=dict(args.overrides),
        handler_workers=args.workers,
        connect_workers=args.connect_workers,
        schedule_interval=args.schedule_interval,
    )
    with stop_event() as done:
        await gateway.start()
        print(f"Serving {gateway.url} management {gateway.management_url}", flush=True)
        try:
            await done.wait()
        finally:
            await gateway.stop()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        logging.basicConfig(
            level=logging.WARNING if args.quiet else logging.INFO,
            format="%(asctime)s %(levelname)s %(message)s",
            stream=sys.stderr,
        )
        asyncio.run(serve(args))
    except (GatewayConfigError, LimitsError, OSError) as error:
        print(f"gateway: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
