"""``make web STAGE=dev``: the browser client against a deployed stage, served locally.

Serves the page at the stage's callback URL (``stage_resources.callback_urls``
in ``.chalice/config.json``: ``http://localhost:8000/callback`` for ``dev``),
so the hosted UI (authorization code + PKCE) can send the browser back to it.
The page's config is written to ``.local/web-<stage>.json`` and served as
``/config.json``, from:

* the pool and app client: the stage's ``environment_variables`` as ``make deploy``
  recorded them in the stage's workspace (``.chalice/deployed/<stage>-workspace/``);
  the region: ``COGNITO_REGION`` or the pool id's prefix;
* the WebSocket URL: the workspace's deploy state (``--ws-url`` to override);
* the hosted UI domain: the resources stack's ``HostedUiDomain`` output
  (read with your AWS credentials; ``--hosted-ui-domain`` to give it instead).

``make run`` serves the same page on the local gateway's origin; this command
is for deployed stages only.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from devtools.state import ROOT
from devtools.signals import stop_event
from devtools.web import WebPage, page_config


def stage_config(stage: str, ws_url: str | None, hosted_ui_domain: str | None,
                 callback_url: str | None) -> dict[str, object]:
    from devtools.deploy.chalice_cli import read_deployed, websocket_url
    from devtools.deploy.workspace import deployed_config

    project = deployed_config(ROOT, stage)  # what make deploy recorded, else the committed config
    project.stage(stage)
    env = project.environment(stage)
    pool_id = env.get("COGNITO_USER_POOL_ID", "")
    client_id = (env.get("COGNITO_APP_CLIENT_IDS", "").split(",") or [""])[0].strip()
    if not pool_id or not client_id:
        raise SystemExit(f"error: stage {stage!r} has no COGNITO_USER_POOL_ID / COGNITO_APP_CLIENT_IDS "
                         "recorded: run `make deploy STAGE={stage}` first")
    region = env.get("COGNITO_REGION") or pool_id.split("_", 1)[0]
    resources = project.resources(stage)
    if callback_url is None:
        if not resources.callback_urls:
            raise SystemExit(f"error: stage {stage!r} lists no stage_resources.callback_urls")
        callback_url = resources.callback_urls[0]
    if ws_url is None:
        deployed = read_deployed(project.project_dir, stage)
        if deployed is None or not deployed.websocket_api_id:
            raise SystemExit(f"error: no WebSocket API is recorded for stage {stage!r}: "
                             f"run `make deploy STAGE={stage}`, or pass --ws-url")
        ws_url = websocket_url(deployed.websocket_api_id, region, project.api_gateway_stage(stage))
    if hosted_ui_domain is None:
        hosted_ui_domain = _stack_output(resources.stack_name, region, "HostedUiDomain")
    return page_config(ws_url=ws_url, region=region, pool_id=pool_id, client_id=client_id, stage=stage,
                       hosted_ui_domain=hosted_ui_domain.rstrip("/"), redirect_uri=callback_url)


def _stack_output(stack_name: str, region: str, key: str) -> str:
    import boto3
    import botocore.exceptions

    from devtools.deploy.stack import describe_stack, stack_outputs

    hint = f"pass --hosted-ui-domain https://<prefix>.auth.{region}.amazoncognito.com"
    try:
        stack = describe_stack(boto3.client("cloudformation", region_name=region), stack_name)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise SystemExit(f"error: could not read {key} from the stack {stack_name} ({error}); {hint}") from None
    if stack is None:
        raise SystemExit(f"error: could not read {key} from the stack {stack_name} (it does not exist); {hint}")
    value = stack_outputs(stack).get(key)
    if value is None:
        raise SystemExit(f"error: the stack {stack_name} has no {key} output; pass --hosted-ui-domain")
    return value


async def _serve(config: dict[str, object], host: str, port: int) -> None:
    """Serve the page with the config ``main`` made (and wrote to the config file): it is not re-read per request."""
    app = web.Application()
    app.add_routes(WebPage(config).routes())
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    with stop_event() as stop:
        try:
            await stop.wait()
        finally:
            await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--ws-url", help="the stage's wss:// URL (default: from .chalice/deployed/<stage>.json)")
    parser.add_argument("--hosted-ui-domain", help="https://<prefix>.auth.<region>.amazoncognito.com "
                                                   "(default: the resources stack's HostedUiDomain output)")
    parser.add_argument("--callback-url", help="redirect URI (default: the stage's first callback URL)")
    parser.add_argument("--config-file", type=Path, default=None, help="where to write the page's config "
                                                                       "(default .local/web-<stage>.json)")
    args = parser.parse_args(argv)
    config = stage_config(args.stage, args.ws_url, args.hosted_ui_domain, args.callback_url)
    callback = urlsplit(str(config["redirectUri"]))
    host, port = callback.hostname or "localhost", callback.port or (443 if callback.scheme == "https" else 80)
    path = args.config_file or ROOT / ".local" / f"web-{args.stage}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    print(f"==> browser client for stage {args.stage}: {callback.scheme}://{callback.netloc}/ "
          f"(config {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}; Ctrl-C stops)", flush=True)
    print(f"    WebSocket {config['wsUrl']}  hosted UI {config['hostedUiDomain']}  "
          f"client {config['clientId']}", flush=True)
    try:
        asyncio.run(_serve(config, host, port))
    except OSError as error:
        print(f"error: {error} (is port {port} in use? `make run` uses it too)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
