"""The settings for several hosts, as a process started with them reads them: the channel
layer's hosts, the broker's transport options, Celery's names, and a deployment's own
settings module (docs/deployment.md's Sentinel example, run as written)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

READ = """
import json, django
django.setup()
from django.conf import settings
from fathomloom.celery import app
layer = settings.CHANNEL_LAYERS["default"]
print(json.dumps({
    "backend": layer["BACKEND"].rsplit(".", 1)[1],
    "hosts": [host.get("address") or host.get("master_name") for host in layer["CONFIG"]["hosts"]],
    "transport_options": app.conf.broker_transport_options,
    "queue": app.conf.task_default_queue,
    "control_exchange": app.conf.control_exchange,
    "schedule": sorted(app.conf.beat_schedule),
}))
"""


def read_settings(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CHANNEL_LAYER", "CELERY_"))}
    base.setdefault("DJANGO_SETTINGS_MODULE", "fathomloom.settings.test")
    return subprocess.run(
        [sys.executable, "-c", READ],
        env={**base, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_with(**env: str) -> dict:
    done = read_settings(**env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_by_default_the_layer_is_on_redis_url_and_redis_keeps_its_visibility_timeout():
    read = settings_with(REDIS_URL="redis://127.0.0.1:6379/7")
    assert read["hosts"] == ["redis://127.0.0.1:6379/7"]
    assert read["transport_options"] == {"visibility_timeout": 7200}
    assert (read["queue"], read["control_exchange"]) == ("celery", "celery")
    assert read["schedule"] == ["dispatch", "prune-events", "requeue-expired"]


@pytest.mark.parametrize("backend", ["core", "pubsub"])
def test_the_layer_shards_over_every_listed_url_in_order(backend):
    read = settings_with(
        CHANNEL_LAYER_BACKEND=backend,
        CHANNEL_LAYER_REDIS_URLS=" redis://10.0.0.2:6379/0, redis://10.0.0.1:6380/1 ,",
    )
    assert read["hosts"] == ["redis://10.0.0.2:6379/0", "redis://10.0.0.1:6380/1"]


def test_a_rabbitmq_broker_gets_no_redis_transport_options():
    read = settings_with(CELERY_BROKER_URL="amqp://guest:guest@127.0.0.1:5672/fathomloom")
    assert read["transport_options"] == {}
    assert read["schedule"] == ["dispatch", "prune-events", "requeue-expired"]


def test_celery_name_prefix_renames_the_queue_and_the_control_exchange():
    read = settings_with(CELERY_NAME_PREFIX="staging.")
    assert (read["queue"], read["control_exchange"]) == ("staging.celery", "staging.celery")


def test_a_layer_url_that_is_not_redis_stops_the_process_without_showing_it():
    done = read_settings(
        CHANNEL_LAYER_REDIS_URLS="redis://10.0.0.1:6379/0,http://layer:s3cret-pw@10.0.0.2/"
    )
    assert done.returncode != 0
    assert "CHANNEL_LAYER_REDIS_URLS: item 2 is not a redis://" in done.stderr
    assert "s3cret-pw" not in done.stderr


def test_the_documented_sentinel_settings_module_builds_sentinel_pools(tmp_path):
    doc = (ROOT / "docs" / "deployment.md").read_text()
    (snippet,) = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    (tmp_path / "mysite_settings.py").write_text(snippet)
    check = READ + (
        "from channels.layers import get_channel_layer\n"
        "from channels_redis.utils import create_pool\n"
        "pools = [create_pool(host) for host in get_channel_layer().hosts]\n"
        "print(json.dumps([[type(p).__name__, p.service_name] for p in pools]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check],
        env={
            **os.environ,
            "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
            "DJANGO_SETTINGS_MODULE": "mysite_settings",
            "SECRET_KEY": "a-deployment-key-for-this-test-only",
            "CREDENTIAL_ENCRYPTION_KEYS": "ZmF0aG9tbG9vbS10ZXN0LWNyZWRlbnRpYWwta2V5ISE=",
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    read, pools = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
    assert read["hosts"] == ["layer-a", "layer-b"]
    assert pools == [
        ["SentinelConnectionPool", "layer-a"],
        ["SentinelConnectionPool", "layer-b"],
    ]
    # Importing fathomloom.settings.base from another settings module leaves Celery whole.
    assert read["schedule"] == ["dispatch", "prune-events", "requeue-expired"]
