"""``room-display check``: can this node reach what its config names?

Each check yields ``(line, ok)``; the CLI prints them and exits 1 if any failed. Checks are quick
(a few seconds at most each) and never change anything.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from display.config import Config, DeviceConfig, FeishuConfig, MqttConfig

TIMEOUT = 5.0


def run_checks(config: Config) -> Iterator[tuple[str, bool]]:
    """Every check that applies to this config, in a stable order."""
    if config.feishu is not None:
        yield check_feishu(config.feishu)
    if config.mqtt is not None:
        yield check_broker(config.mqtt, config.node.name)
    for _room, device in config.devices():
        yield check_device(device)
    state = config.node.state_dir
    yield _writable(state, f"state directory {state}")


def check_feishu(feishu: FeishuConfig) -> tuple[str, bool]:
    """Ask Feishu for a tenant token: proves the domain is reachable and the app credentials
    are right, without opening a long connection that would steal events from a running node."""
    if not feishu.app_id or not feishu.app_secret:
        return (f"Feishu {feishu.mode}: no app credentials (webhook only; re-sync is off)",
                feishu.mode == "webhook")
    url = f"{feishu.domain}/open-apis/auth/v3/tenant_access_token/internal"
    body = json.dumps({"app_id": feishu.app_id,
                       "app_secret": feishu.app_secret.reveal()}).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return f"Feishu {feishu.domain}: HTTP {exc.code} from the token endpoint", False
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"Feishu {feishu.domain}: unreachable ({reason})", False
    if answer.get("code") == 0:
        return f"Feishu {feishu.domain}: app {feishu.app_id} credentials accepted", True
    return (f"Feishu {feishu.domain}: credentials rejected (code {answer.get('code')}: "
            f"{answer.get('msg')}); check [feishu] app_id / app_secret", False)


def check_broker(mqtt: MqttConfig, node_name: str = "check") -> tuple[str, bool]:
    """A real MQTT handshake: CONNECT, then the broker's CONNACK within :data:`TIMEOUT`."""
    from display.mqtt.client import probe  # paho is only imported when [mqtt] is configured

    ok, line = probe(mqtt, node_name, TIMEOUT)
    return line, ok


def check_device(device: DeviceConfig) -> tuple[str, bool]:
    """Is the device's port or directory there?"""
    label = f"device {device.id} ({device.kind}, {device.url})"
    if device.scheme == "virtual":
        return _writable(Path(device.url.removeprefix("virtual:")), label)
    if device.scheme == "mqtt":
        return f"{label}: published through the broker", True
    path = device.url.split("?", 1)[0]
    if "://" in path:
        return f"{label}: network/URL port, checked when the node opens it", True
    if not os.path.exists(path):
        return f"{label}: {path} does not exist (unplugged? see hardware/README.md)", False
    if not os.access(path, os.R_OK | os.W_OK):
        return f"{label}: no permission on {path} (add the user to group dialout)", False
    return f"{label}: port present", True


def _writable(directory: Path, label: str) -> tuple[str, bool]:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".room-display-check"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return f"{label}: not writable ({exc.strerror})", False
    return f"{label}: writable", True
