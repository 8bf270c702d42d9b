"""The management web UI in headless Chromium: the flows people use it for, each checked
against the broker through the API or an AMQP client. The tests share one broker and one
browser and run in file order (later ones use what earlier ones made)."""

import json
import os
import time
import urllib.request

import pika
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys


def raw_get(broker, path, headers=None):
    req = urllib.request.Request(broker.url.rstrip("/") + path, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.headers, resp.read()


def test_static_files_are_served_without_auth(broker):
    status, headers, body = raw_get(broker, "/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert b'src="js/core.js"' in body
    total = len(body)
    for path, ctype in [("/js/core.js", "text/javascript; charset=utf-8"),
                        ("/js/pages.js", "text/javascript; charset=utf-8"),
                        ("/js/admin.js", "text/javascript; charset=utf-8"),
                        ("/css/warren.css", "text/css; charset=utf-8"),
                        ("/img/warren.svg", "image/svg+xml")]:
        status, headers, body = raw_get(broker, path)
        assert (status, headers["Content-Type"]) == (200, ctype), path
        total += len(body)
        # Revalidation answers 304 with the same tag.
        try:
            raw_get(broker, path, {"If-None-Match": headers["ETag"]})
            pytest.fail(f"{path}: no 304 for a matching ETag")
        except urllib.error.HTTPError as e:
            assert e.code == 304
    assert total <= 300 * 1024, f"UI is {total} bytes, over the 300 KB budget"
    # The API itself still wants credentials.
    code, _ = broker.api("GET", "/overview", user="guest", password="wrong")
    assert code == 401
    code, body = broker.api("GET", "/js/../../api/overview")
    assert code in (401, 404) or isinstance(body, dict)


def test_login_fails_with_a_wrong_password(ui, shots):
    ui.d.get(ui.broker.url)
    ui.d.execute_script("sessionStorage.clear()")
    ui.d.get(ui.broker.url)
    ui.fill("#login-user", "guest")
    ui.fill("#login-pass", "nope")
    ui.click("#login-submit")
    ui.text_in("#login-error", "Login failed")
    assert not ui.d.find_element(By.ID, "top").is_displayed()
    shots(ui.d, "login")


def test_login_and_overview(ui, broker, shots):
    # Some traffic so the totals and charts have something to show.
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port))
    ch = conn.channel()
    ch.queue_declare("ui-overview", durable=True)
    ch.confirm_delivery()
    for i in range(20):
        ch.basic_publish("", "ui-overview", f"m{i}".encode())
    ui.login("guest", "guest")
    ui.find("#totals .total")
    ui.text_in("#total-queues", "1")
    ui.text_in("#total-ready", "20")
    ui.text_in("#total-connections", "1")
    tabs = [a.text for a in ui.d.find_elements(By.CSS_SELECTOR, "#tabs a")]
    assert tabs == ["Overview", "Connections", "Channels", "Exchanges", "Queues", "Admin"]
    assert ui.find("#nodes table").text.count("rabbit@") == 1
    assert len(ui.d.find_elements(By.CSS_SELECTOR, "svg.chart")) == 2
    assert ui.d.find_element(By.ID, "defs-export").is_displayed()
    # The session survives a reload (credentials in sessionStorage).
    ui.d.refresh()
    ui.find("#totals .total")
    if shots.wanted:
        # For the picture only: some seconds of traffic so the charts have a history.
        ch.basic_qos(prefetch_count=50)
        ch.basic_consume("ui-overview", lambda c, m, p, b: c.basic_ack(m.delivery_tag))
        end = time.time() + 22
        i = 0
        while time.time() < end:
            i += 1
            ch.basic_publish("", "ui-overview", b"x" * (i % 7 + 1))
            conn.process_data_events(time_limit=0.02 if i % 4 else 0.08)
    conn.close()
    shots(ui.d, "overview")


def test_queue_exchange_bind_publish_get_purge_delete(ui, broker, shots):
    ui.as_guest()
    ui.go("#/queues")
    ui.fill("#add-queue-name", "ui-q")
    ui.select("#add-queue-type", "classic")
    ui.click("#add-queue-submit")
    ui.flash("Queue ui-q added.")
    ui.link("ui-q")
    code, q = broker.api("GET", "/queues/%2F/ui-q")
    assert code == 200 and q["durable"] is True

    # A quorum queue with an argument helper.
    ui.select("#add-queue-type", "quorum")
    ui.fill("#add-queue-name", "ui-quorum")
    ui.click("#add-queue-args button[title='x-delivery-limit']")
    ui.d.switch_to.active_element.send_keys("5")
    ui.click("#add-queue-submit")
    ui.flash("Queue ui-quorum added.")
    code, q = broker.api("GET", "/queues/%2F/ui-quorum")
    assert code == 200
    assert q["arguments"] == {"x-queue-type": "quorum", "x-delivery-limit": 5}
    shots(ui.d, "queues")

    ui.go("#/exchanges")
    ui.fill("#add-exchange-name", "ui-x")
    ui.select("#add-exchange-type", "direct")
    ui.click("#add-exchange-submit")
    ui.flash("Exchange ui-x added.")
    ui.link("ui-x").click()
    ui.text_in("h1", "ui-x")

    # Bind the exchange to the queue.
    ui.select("#bind-from-exchange-dtype", "q")
    ui.fill("#bind-from-exchange-destination", "ui-q")
    ui.fill("#bind-from-exchange-routing_key", "rk")
    ui.click("#bind-from-exchange-submit")
    ui.flash("Binding added.")
    ui.link("ui-q (queue)")
    code, bs = broker.api("GET", "/exchanges/%2F/ui-x/bindings/source")
    assert [(b["destination"], b["routing_key"]) for b in bs] == [("ui-q", "rk")]

    # Publish through the exchange, with a header and a property.
    ui.fill("#publish-exchange-routing_key", "rk")
    ui.fill("#publish-exchange-payload", "hello from the UI")
    ui.fill("#publish-exchange-headers input.kv-key", "x-origin")
    ui.fill("#publish-exchange-headers input.kv-value", "browser")
    ui.click("#publish-exchange-props button[title='content_type']")
    ui.click("#publish-exchange-submit")
    ui.flash("Message published.")
    shots(ui.d, "exchange")

    # An unroutable one says so.
    ui.fill("#publish-exchange-routing_key", "nowhere")
    ui.click("#publish-exchange-submit")
    ui.flash("not routed")

    ui.go("#/queues/%2F/ui-q")
    ui.text_in("#queue-ready", "1", timeout=15)
    ui.select("#get-messages-ackmode", "ack_requeue_true")
    ui.click("#get-messages-submit")
    ui.text_in("#get-results pre.payload", "hello from the UI")
    results = ui.find("#get-results").text
    assert "x-origin" in results and "browser" in results and "text/plain" in results
    code, q = broker.api("GET", "/queues/%2F/ui-q")
    assert q["messages"] == 1  # requeued

    # Publish straight to the queue from its page, then purge.
    ui.fill("#publish-queue-payload", "second")
    ui.click("#publish-queue-submit")
    ui.flash("Message published.")
    ui.text_in("#queue-total", "2", timeout=15)
    ui.link("ui-x")  # the binding shows on the queue page too
    shots(ui.d, "queue")
    ui.click("#purge-queue")
    ui.accept_confirm()
    ui.flash("Queue ui-q purged.")
    deadline = time.time() + 5
    while broker.api("GET", "/queues/%2F/ui-q")[1]["messages"] != 0 and time.time() < deadline:
        time.sleep(0.1)
    assert broker.api("GET", "/queues/%2F/ui-q")[1]["messages"] == 0

    # Unbind from the queue page, then delete queue and exchange.
    ui.click("button[data-fk^='unbind:ui-x:ui-q:']")
    ui.flash("Binding removed.")
    assert broker.api("GET", "/exchanges/%2F/ui-x/bindings/source")[1] == []
    ui.click("#delete-queue-submit")
    ui.accept_confirm()
    ui.flash("Queue ui-q deleted.")
    assert broker.api("GET", "/queues/%2F/ui-q")[0] == 404
    ui.go("#/exchanges/%2F/ui-x")
    ui.click("#delete-exchange-submit")
    ui.accept_confirm()
    ui.flash("Exchange ui-x deleted.")
    assert broker.api("GET", "/exchanges/%2F/ui-x")[0] == 404


def test_admin_adds_a_monitoring_user_who_sees_no_admin_tab(ui, broker, shots):
    ui.as_guest()
    ui.go("#/admin")
    ui.fill("#add-user-name", "watcher")
    ui.fill("#add-user-password", "watch-pw")
    ui.fill("#add-user-tags", "monitoring")
    ui.click("#add-user-submit")
    ui.flash("User watcher added.")
    ui.link("watcher").click()
    ui.select("#set-permission-vhost", "/")
    ui.click("#set-permission-submit")
    ui.flash("Permission in / set.")
    code, perms = broker.api("GET", "/users/watcher/permissions")
    assert [(p["vhost"], p["configure"], p["write"], p["read"]) for p in perms] == [("/", ".*", ".*", ".*")]
    code, user = broker.api("GET", "/users/watcher")
    assert user["tags"] in (["monitoring"], "monitoring")
    shots(ui.d, "admin-user")

    ui.logout()
    ui.login("watcher", "watch-pw")
    tabs = [a.text for a in ui.d.find_elements(By.CSS_SELECTOR, "#tabs a")]
    assert "Admin" not in tabs and "Queues" in tabs
    ui.find("#totals .total")
    assert ui.d.find_elements(By.ID, "defs-export") == []
    # A typed admin URL goes back to the overview.
    ui.go("#/admin/users")
    ui.wait(lambda d: d.current_url.endswith("#/"))
    assert ui.d.find_elements(By.ID, "add-user") == []

    # A user without a management tag cannot log in at all.
    assert broker.api("PUT", "/users/plain", {"password": "p", "tags": ""})[0] in (201, 204)
    ui.logout()
    ui.fill("#login-user", "plain")
    ui.fill("#login-pass", "p")
    ui.click("#login-submit")
    ui.text_in("#login-error", "not a management user")
    ui.login("guest", "guest")


def test_policymaker_sees_policies_only(ui, broker):
    ui.as_guest()
    assert broker.api("PUT", "/users/pm", {"password": "pm-pw", "tags": "policymaker"})[0] in (201, 204)
    assert broker.api("PUT", "/permissions/%2F/pm", {"configure": ".*", "write": ".*", "read": ".*"})[0] in (201, 204)
    ui.logout()
    ui.login("pm", "pm-pw")
    ui.link("Admin").click()
    ui.wait(lambda d: d.current_url.endswith("#/admin/policies"))
    ui.find("#add-policy")
    subtabs = [a.text for a in ui.d.find_elements(By.CSS_SELECTOR, "nav.subnav a")]
    assert subtabs == ["Policies"]
    ui.logout()
    ui.login("guest", "guest")


def test_close_connection_from_the_ui_drops_the_client(ui, broker, shots):
    ui.as_guest()
    params = pika.ConnectionParameters("127.0.0.1", broker.amqp_port,
                                       client_properties={"connection_name": "held-by-test"})
    conn = pika.BlockingConnection(params)
    conn.channel()
    ui.go("#/connections")
    ui.text_in("#connections-table", "held-by-test", timeout=15)
    shots(ui.d, "connections")
    ui.go("#/channels")
    ui.text_in("#channels-table", "(1)", timeout=15)
    shots(ui.d, "channels")
    ui.go("#/connections")
    ui.find("#connections-table a").click()
    ui.text_in("h1", "Connection")
    ui.text_in("main", "held-by-test")
    shots(ui.d, "connection")
    ui.fill("#close-connection-reason", "closed by the UI test")
    ui.click("#close-connection-submit")
    ui.accept_confirm()
    ui.flash("closed.")
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as err:
        for _ in range(50):
            conn.process_data_events(time_limit=0.1)
    assert err.value.reply_code == 320
    assert "closed by the UI test" in err.value.reply_text
    # The broker drops the connection from its registry once the client's close-ok is in,
    # a moment after the client saw the close.
    deadline = time.time() + 5
    while broker.api("GET", "/connections")[1] != [] and time.time() < deadline:
        time.sleep(0.05)
    assert broker.api("GET", "/connections")[1] == []


def test_admin_pages(ui, broker, shots):
    ui.as_guest()
    ui.go("#/admin/vhosts")
    ui.fill("#add-vhost-name", "ui-vhost")
    ui.click("#add-vhost-submit")
    ui.flash("Virtual host ui-vhost added.")
    assert broker.api("GET", "/vhosts/ui-vhost")[0] == 200
    shots(ui.d, "admin-vhosts")

    ui.go("#/admin/policies")
    ui.fill("#add-policy-name", "ui-ttl")
    ui.fill("#add-policy-pattern", "^ui-")
    ui.select("#add-policy-apply-to", "queues")
    ui.click("#policy-definition button[title='message-ttl']")
    ui.d.switch_to.active_element.send_keys("60000")
    ui.click("#add-policy-submit")
    ui.flash("Policy ui-ttl set.")
    code, p = broker.api("GET", "/policies/%2F/ui-ttl")
    assert code == 200 and p["definition"] == {"message-ttl": 60000} and p["apply-to"] == "queues"
    ui.text_in("#policies", "ui-ttl")
    shots(ui.d, "admin-policies")

    ui.go("#/admin/limits")
    ui.select("#set-vhost-limit-vhost", "ui-vhost")
    ui.select("#set-vhost-limit-limit", "max-queues")
    ui.fill("#set-vhost-limit-value", "7")
    ui.click("#set-vhost-limit-submit")
    ui.flash("Virtual host limit set.")
    ui.text_in("#vhost-limits", "max-queues")
    code, limits = broker.api("GET", "/vhost-limits/ui-vhost")
    assert limits[0]["value"] == {"max-queues": 7}
    shots(ui.d, "admin-limits")
    ui.go("#/admin/users")
    # guest: always there (watcher too when the monitoring-user test ran first).
    ui.text_in("#users", "guest")
    shots(ui.d, "admin-users")


def test_definitions_export_and_import(ui, broker, tmp_path):
    ui.as_guest()
    # Its own queue and user to find in the export (not those of earlier tests).
    assert broker.api("PUT", "/queues/%2F/ui-exported", {"durable": True})[0] in (201, 204)
    assert broker.api("PUT", "/users/exported", {"password": "x-pw", "tags": ""})[0] in (201, 204)
    ui.go("#/")
    ui.click("#defs-export")
    deadline = time.time() + 10
    files = []
    while time.time() < deadline:
        files = [f for f in os.listdir(ui.d.downloads) if f.endswith(".json")]
        if files:
            break
        time.sleep(0.2)
    assert files, "no definitions file downloaded"
    with open(os.path.join(ui.d.downloads, files[0])) as f:
        exported = json.load(f)
    assert "ui-exported" in [q["name"] for q in exported["queues"]]
    assert "exported" in [u["name"] for u in exported["users"]]

    defs = tmp_path / "defs.json"
    defs.write_text(json.dumps({"queues": [{"name": "ui-imported", "vhost": "/", "durable": True,
                                            "auto_delete": False, "arguments": {}}]}))
    ui.find("#defs-file").send_keys(str(defs))
    ui.click("#defs-import")
    ui.flash("Definitions from defs.json imported.")
    assert broker.api("GET", "/queues/%2F/ui-imported")[0] == 200


def test_memory_alarm_shows_on_every_page(ui, broker):
    ui.as_guest()
    code, _ = broker.api("PUT", "/warren/vm-memory-high-watermark", {"absolute": 1000})
    assert code in (200, 204)
    try:
        ui.go("#/queues")
        ui.text_in("#alarms", "Memory alarm", timeout=15)
        ui.go("#/")
        ui.text_in("#alarms", "Publishers are blocked", timeout=15)
        assert "ALARM" in ui.find("#nodes").text
    finally:
        broker.api("PUT", "/warren/vm-memory-high-watermark", {"relative": 0.4})
    ui.wait(lambda d: not d.find_element(By.ID, "alarms").is_displayed(), timeout=20)


@pytest.mark.timeout(120)
def test_ten_thousand_queues_page_stays_responsive(ui, broker, shots):
    ui.as_guest()
    n = 10_000
    defs = {"queues": [{"name": f"bulk-{i:05}", "vhost": "/", "durable": False, "auto_delete": False,
                        "arguments": {}} for i in range(n)]}
    # Sorts after every other queue name (earlier tests' ones included).
    defs["queues"].append({"name": "zz-ui-last", "vhost": "/", "durable": False,
                           "auto_delete": False, "arguments": {}})
    t0 = time.time()
    code, body = broker.api("POST", "/definitions", defs)
    assert code in (200, 201, 204), body
    declare_s = time.time() - t0
    t0 = time.time()
    ui.go("#/queues")
    ui.text_in("#queues-summary", "10,00", timeout=10)
    rows = ui.d.find_elements(By.CSS_SELECTOR, "#queues-table tbody tr")
    load_s = time.time() - t0
    assert len(rows) == 100  # one page rendered, not ten thousand rows
    assert load_s < 5, f"queues page took {load_s:.1f}s"
    # The page answers scripts at once (not frozen).
    t0 = time.time()
    assert ui.d.execute_script("return document.querySelectorAll('#queues-table tbody tr').length") == 100
    assert time.time() - t0 < 1

    # Regex filter, sorting and paging happen on the server.
    flt = ui.find("#main input.filter")
    ui.click("#main input[type=checkbox]")
    flt.send_keys("^bulk-0999")
    ui.text_in("#queues-summary", "10 of", timeout=10)
    assert len(ui.d.find_elements(By.CSS_SELECTOR, "#queues-table tbody tr")) == 10
    flt.send_keys(Keys.CONTROL, "a")
    flt.send_keys(Keys.DELETE)
    ui.click("#main input[type=checkbox]")
    ui.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#queues-table tbody tr")) == 100)
    ui.click("button[data-fk='sort:name']")  # sorted by name already: now descending
    ui.wait(lambda d: d.execute_script(
        "return document.querySelector(\"button[data-fk='sort:name']\").parentElement.getAttribute('aria-sort')")
        == "descending")
    ui.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#queues-table tbody tr td:nth-child(2)").text == "zz-ui-last")
    ui.click("button[data-fk='pg:next']")
    ui.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#queues-table tbody tr td:nth-child(2)").text.startswith("bulk-09"))
    shots(ui.d, "queues-10k")
    print(f"\n10,000 queues: import {declare_s:.2f}s, first page shown {load_s:.2f}s")
