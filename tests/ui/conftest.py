"""Fixtures of the web UI suite: a warren of its own (ephemeral ports, temporary data
directory) and one headless Debian Chromium driven by Selenium through chromedriver."""

import base64
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ROOT = pathlib.Path(__file__).resolve().parents[2]


def pytest_addoption(parser):
    parser.addoption(
        "--screenshots",
        action="store_true",
        help="save a screenshot of each page under docs/ui/ (also: WARREN_UI_SCREENSHOTS=1)",
    )


class Broker:
    def __init__(self, proc, amqp_port, http_port, data_dir, log):
        self.proc = proc
        self.amqp_port = amqp_port
        self.http_port = http_port
        self.data_dir = data_dir
        self.log = log
        self.url = f"http://127.0.0.1:{http_port}/"

    def api(self, method, path, body=None, user="guest", password="guest", headers=None):
        """One management API request; (status, parsed JSON or None)."""
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.url + "api" + path, data=data, method=method)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", "Basic " + token)
        req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")


def _warren_bin():
    env = os.environ.get("WARREN_BIN")
    if env:
        return env
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(pathlib.Path(target) / "debug" / "warren")


@pytest.fixture(scope="session")
def broker():
    binary = _warren_bin()
    if not os.path.exists(binary):
        pytest.fail(f"no warren binary at {binary}: build it (cargo build -p warren) or set WARREN_BIN")
    data_dir = tempfile.mkdtemp(prefix="warren-ui-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
    env.update({"NO_COLOR": "1", "WARREN_LOG": "info", "WARREN_RABBITMQ_ETC": "off"})
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
         "--prometheus-listen", "127.0.0.1:0", "--data-dir", os.path.join(data_dir, "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    log = []
    ports = {}
    ready = threading.Event()

    def read():
        for line in proc.stdout:
            log.append(line)
            for what in ("AMQP", "HTTP"):
                marker = f"listening for {what} on "
                if marker in line and what not in ports:
                    ports[what] = int(line.split(marker, 1)[1].strip().rsplit(":", 1)[1])
            if "Server startup complete" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(30) or "HTTP" not in ports or "AMQP" not in ports:
        proc.kill()
        pytest.fail("warren did not start:\n" + "".join(log))
    b = Broker(proc, ports["AMQP"], ports["HTTP"], data_dir, log)
    yield b
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def driver():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    profile = tempfile.mkdtemp(prefix="warren-ui-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--disable-dev-shm-usage",
                 "--window-size=1440,900", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    downloads = tempfile.mkdtemp(prefix="warren-ui-downloads-")
    opts.add_experimental_option("prefs", {"download.default_directory": downloads,
                                           "download.prompt_for_download": False})
    # The driver path is given, so Selenium Manager never tries to download one.
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    d = webdriver.Chrome(options=opts, service=service)
    d.set_page_load_timeout(30)
    d.downloads = downloads
    yield d
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)
    shutil.rmtree(downloads, ignore_errors=True)


@pytest.fixture(scope="session")
def shots(request):
    """A function that saves a screenshot as docs/ui/NAME.png when asked for."""
    wanted = request.config.getoption("--screenshots") or os.environ.get("WARREN_UI_SCREENSHOTS") == "1"
    out = ROOT / "docs" / "ui"

    def shot(d, name):
        if not wanted:
            return
        out.mkdir(parents=True, exist_ok=True)
        time.sleep(0.3)  # let the last refresh paint
        # The whole page (up to a limit), at the laptop width the suite uses.
        height = d.execute_script("return document.documentElement.scrollHeight")
        d.set_window_size(1440, min(max(int(height) + 100, 900), 2200))
        d.execute_script("window.scrollTo(0, 0)")
        d.save_screenshot(str(out / f"{name}.png"))
        d.set_window_size(1440, 900)

    shot.wanted = wanted
    return shot


class UI:
    """Small helpers over the driver for the flows."""

    def __init__(self, d, broker):
        self.d = d
        self.broker = broker

    def wait(self, cond, timeout=10):
        # Tables are redrawn on every refresh, so an element found a moment ago may be gone.
        return WebDriverWait(self.d, timeout, ignored_exceptions=(
            StaleElementReferenceException, NoSuchElementException)).until(cond)

    def find(self, css, timeout=10):
        return self.wait(EC.visibility_of_element_located((By.CSS_SELECTOR, css)), timeout)

    def click(self, css, timeout=10):
        # A refresh may redraw the element between finding and clicking it: find it again.
        for attempt in range(5):
            el = self.wait(EC.element_to_be_clickable((By.CSS_SELECTOR, css)), timeout)
            try:
                self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
                el.click()
                return el
            except StaleElementReferenceException:
                if attempt == 4:
                    raise
        return None

    def link(self, text, timeout=10):
        return self.wait(EC.element_to_be_clickable((By.LINK_TEXT, text)), timeout)

    def text_in(self, css, text, timeout=10):
        return self.wait(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text), timeout)

    def fill(self, css, value):
        el = self.find(css)
        el.clear()
        el.send_keys(value)
        return el

    def select(self, css, value):
        from selenium.webdriver.support.ui import Select

        Select(self.find(css)).select_by_value(value)

    def go(self, hash_):
        self.d.get(self.broker.url + hash_)

    def accept_confirm(self):
        self.wait(EC.alert_is_present(), 5).accept()

    def flash(self, text, timeout=10):
        return self.text_in("#flash", text, timeout)

    def login(self, user, password):
        self.d.get(self.broker.url)
        self.d.execute_script("sessionStorage.clear()")
        self.d.get(self.broker.url)
        self.fill("#login-user", user)
        self.fill("#login-pass", password)
        self.click("#login-submit")
        self.find("#tabs a")

    def as_guest(self):
        """Logs in as guest unless this browser session already is: each test can run on
        its own (`run.sh -k NAME`), not only after the login test."""
        self.d.get(self.broker.url)
        saved = self.d.execute_script("return sessionStorage.getItem('warren.auth')")
        if not saved or json.loads(saved).get("name") != "guest":
            self.login("guest", "guest")

    def logout(self):
        self.click("#logout")
        self.find("#login-user")


@pytest.fixture(scope="session")
def ui(driver, broker):
    return UI(driver, broker)
