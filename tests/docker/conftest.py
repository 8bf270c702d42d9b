"""Helpers for the Docker tests: docker and docker-compose through subprocess, with every
call bounded by a timeout so a stuck engine fails the test instead of hanging it."""

import json
import os
import subprocess
import time
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGE = os.environ.get("WARREN_IMAGE", "warren:dev")


def run(*args, timeout=120, check=True, env=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    res = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                         env=full_env, cwd=HERE)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {res.returncode}:\n"
                             f"{res.stdout}\n{res.stderr}")
    return res


def docker(*args, **kw):
    return run("docker", *args, **kw)


def inspect(container, fmt):
    return docker("inspect", "--format", fmt, container).stdout.strip()


def wait_healthy(container, timeout=60):
    """Seconds until the container's healthcheck passed."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        status = inspect(container, "{{.State.Health.Status}}")
        if status == "healthy":
            return time.monotonic() - start
        if inspect(container, "{{.State.Running}}") != "true":
            logs = docker("logs", container, check=False)
            raise AssertionError(f"{container} stopped: {logs.stdout}{logs.stderr}")
        time.sleep(0.1)
    logs = docker("logs", container, check=False)
    raise AssertionError(f"{container} not healthy after {timeout} s: {logs.stdout}{logs.stderr}")


def host_port(container, port):
    """The host port published for the container's `port`/tcp."""
    out = inspect(container, "{{json .NetworkSettings.Ports}}")
    return int(json.loads(out)[f"{port}/tcp"][0]["HostPort"])


class Compose:
    """One docker-compose project (a unique name, so runs do not collide)."""

    def __init__(self, file, env=None):
        self.file = file
        self.project = "warrentest" + uuid.uuid4().hex[:8]
        self.env = dict(env or {})
        self.env["WARREN_IMAGE"] = IMAGE

    def __call__(self, *args, timeout=180, check=True, env=None):
        e = dict(self.env)
        e.update(env or {})
        return run("docker-compose", "-p", self.project, "-f", self.file, *args,
                   timeout=timeout, check=check, env=e)

    def container(self, service):
        return self("ps", "-q", service).stdout.strip()

    def down(self):
        self("down", "-v", "--remove-orphans", "-t", "10", check=False)


@pytest.fixture
def compose():
    made = []

    def make(file, env=None):
        c = Compose(file, env)
        made.append(c)
        return c

    yield make
    for c in made:
        c.down()


@pytest.fixture
def container():
    """docker run -d with cleanup; returns the container id."""
    started = []

    def start(*args):
        cid = docker("run", "-d", *args).stdout.strip()
        started.append(cid)
        return cid

    yield start
    for cid in started:
        docker("rm", "-f", "-v", cid, check=False)
