"""Publisher confirms and transactions."""

import pika
import pika.exceptions
import pytest

import amqp_raw as R
from conftest import close_info, drain, get_all, sync, wait_until

CCBB = pika.exceptions.ChannelClosedByBroker


def excl_queue(ch):
    return ch.queue_declare("", exclusive=True).method.queue


def assert_close(ei, code, text, class_id, method_id):
    assert close_info(ei.value) == (code, text, class_id, method_id)


def count(ch, q):
    return ch.queue_declare(q, passive=True).method.message_count


# ---------------------------------------------------------------------------
# publisher confirms
# ---------------------------------------------------------------------------

def test_confirm_select_ok(channel):
    channel.confirm_delivery()
    q = excl_queue(channel)
    # BlockingChannel waits for the ack of each publish in confirm mode
    for i in range(10):
        channel.basic_publish("", q, b"%d" % i)
    assert count(channel, q) == 10


def test_confirms_cover_every_publish_in_order_raw(raw):
    """Acks may be coalesced with multiple=1, but every delivery tag 1..N is
    confirmed exactly once, in increasing order, and no nack is sent."""
    n = 200
    c = raw(open=True)
    c.open_channel(1)
    q = c.queue_declare(1, "", exclusive=True).args().shortstr()
    c.send_method(1, R.CONFIRM_SELECT, R.bits(False))
    c.expect((85, 11))
    c.send(b"".join(c.publish_frames(1, "", q, b"m%d" % i) for i in range(n)))
    confirmed = []
    while len(confirmed) < n:
        fr = c.read_method()
        assert fr.class_method == R.BASIC_ACK, fr
        d = fr.args()
        tag, multiple = d.longlong(), d.octet()
        last = confirmed[-1] if confirmed else 0
        assert tag > last
        if multiple:
            confirmed.extend(range(last + 1, tag + 1))
        else:
            assert tag == last + 1  # single acks arrive in order here
            confirmed.append(tag)
    assert confirmed == list(range(1, n + 1))


def test_confirm_unroutable_is_still_acked(channel):
    channel.confirm_delivery()
    # no exception: the broker acks unroutable (non-mandatory) messages
    channel.basic_publish("amq.direct", "warren-nobody-bound-here", b"x")
    assert channel.is_open


def test_confirm_mandatory_unroutable_raises_unroutable(channel):
    """pika raises UnroutableError only if basic.return arrived before the
    ack: this checks the broker's ordering."""
    channel.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError) as ei:
        channel.basic_publish("amq.direct", "warren-nobody-bound-here", b"bounced",
                              mandatory=True)
    (ret,) = ei.value.messages
    assert (ret.method.reply_code, ret.method.reply_text, ret.method.exchange,
            ret.method.routing_key) == (312, "NO_ROUTE", "amq.direct", "warren-nobody-bound-here")
    assert ret.body == b"bounced"
    q = excl_queue(channel)
    channel.basic_publish("", q, b"fine", mandatory=True)
    assert count(channel, q) == 1


def test_confirm_publish_to_missing_exchange_closes_channel(connection):
    ch = connection.channel()
    ch.confirm_delivery()
    with pytest.raises(CCBB) as ei:
        ch.basic_publish("warren-no-such-exchange", "rk", b"x")
    assert_close(ei, 404, "NOT_FOUND - no exchange 'warren-no-such-exchange' in vhost '/'", 60, 40)
    assert connection.is_open


def test_confirm_select_twice_is_ok_raw(raw):
    c = raw(open=True)
    c.open_channel(1)
    c.send_method(1, R.CONFIRM_SELECT, R.bits(False))
    c.expect((85, 11))
    c.send_method(1, R.CONFIRM_SELECT, R.bits(False))
    c.expect((85, 11))


def test_confirm_select_nowait_raw(raw):
    c = raw(open=True)
    c.open_channel(1)
    q = c.queue_declare(1, "", exclusive=True).args().shortstr()
    c.send_method(1, R.CONFIRM_SELECT, R.bits(True))  # nowait: no select-ok
    c.send(c.publish_frames(1, "", q, b"x"))
    fr = c.read_method()
    assert fr.class_method == R.BASIC_ACK
    d = fr.args()
    assert (d.longlong(), d.octet()) == (1, 0)


def test_cannot_switch_from_tx_to_confirm(connection):
    ch = connection.channel()
    ch.tx_select()
    with pytest.raises(CCBB) as ei:
        ch.confirm_delivery()
    assert_close(ei, 406, "PRECONDITION_FAILED - cannot switch from tx to confirm mode", 85, 10)
    assert connection.is_open


def test_cannot_switch_from_confirm_to_tx(connection):
    ch = connection.channel()
    ch.confirm_delivery()
    with pytest.raises(CCBB) as ei:
        ch.tx_select()
    assert_close(ei, 406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode", 90, 10)
    assert connection.is_open


# ---------------------------------------------------------------------------
# transactions
# ---------------------------------------------------------------------------

def test_commit_without_select(connection):
    ch = connection.channel()
    with pytest.raises(CCBB) as ei:
        ch.tx_commit()
    assert_close(ei, 406, "PRECONDITION_FAILED - channel is not transactional", 90, 20)
    assert connection.is_open


def test_rollback_without_select(connection):
    ch = connection.channel()
    with pytest.raises(CCBB) as ei:
        ch.tx_rollback()
    assert_close(ei, 406, "PRECONDITION_FAILED - channel is not transactional", 90, 30)


def test_tx_select_twice_is_ok(channel):
    channel.tx_select()
    assert isinstance(channel.tx_select().method, pika.spec.Tx.SelectOk)


def test_tx_commit_publishes(connection):
    tx, obs = connection.channel(), connection.channel()
    q = excl_queue(obs)
    tx.tx_select()
    tx.basic_publish("", q, b"a")
    tx.basic_publish("", q, b"b")
    sync(tx)
    assert count(obs, q) == 0  # not visible before commit
    assert isinstance(tx.tx_commit().method, pika.spec.Tx.CommitOk)
    assert [b for _, _, b in get_all(obs, q)] == [b"a", b"b"]


def test_tx_rollback_discards_publishes(connection):
    tx, obs = connection.channel(), connection.channel()
    q = excl_queue(obs)
    tx.tx_select()
    tx.basic_publish("", q, b"discarded")
    assert isinstance(tx.tx_rollback().method, pika.spec.Tx.RollbackOk)
    assert count(obs, q) == 0
    # the channel stays transactional after commit/rollback
    tx.basic_publish("", q, b"kept")
    sync(tx)
    assert count(obs, q) == 0
    tx.tx_commit()
    assert [b for _, _, b in get_all(obs, q)] == [b"kept"]


def test_tx_acks(connection):
    setup = connection.channel()
    q = excl_queue(setup)
    for i in range(2):
        setup.basic_publish("", q, b"m%d" % i)
    sync(setup)
    tx = connection.channel()
    tx.tx_select()
    m0 = tx.basic_get(q)[0]
    m1 = tx.basic_get(q)[0]
    tx.basic_ack(m0.delivery_tag)
    tx.tx_rollback()
    # the rolled-back ack did not happen: m0 is still unacked (not requeued)
    assert count(setup, q) == 0
    tx.basic_ack(m1.delivery_tag)
    tx.tx_commit()
    tx.close()  # m0 (never acked in a committed tx) is requeued
    got = get_all(setup, q)
    assert [(b, m.redelivered) for m, _, b in got] == [(b"m0", True)]


def test_tx_reject_applies_on_commit(connection):
    setup = connection.channel()
    q = excl_queue(setup)
    setup.basic_publish("", q, b"m")
    sync(setup)
    tx = connection.channel()
    tx.tx_select()
    m = tx.basic_get(q)[0]
    tx.basic_reject(m.delivery_tag, requeue=True)
    sync(tx)
    assert count(setup, q) == 0
    tx.tx_commit()
    got = get_all(setup, q)
    assert [(b, mm.redelivered) for mm, _, b in got] == [(b"m", True)]


def test_tx_mandatory_return_after_commit(channel):
    returned = []
    channel.add_on_return_callback(lambda ch, m, p, b: returned.append((m.reply_code, b)))
    channel.tx_select()
    channel.basic_publish("amq.direct", "warren-nobody-bound-here", b"tx-mand", mandatory=True)
    sync(channel)
    drain(channel.connection, 0.2)
    assert returned == []  # nothing is routed (or returned) before commit
    channel.tx_commit()
    assert wait_until(channel.connection, lambda: returned)
    assert returned == [(312, b"tx-mand")]


def test_tx_publish_to_missing_exchange_fails_immediately(connection):
    ch = connection.channel()
    ch.tx_select()
    ch.basic_publish("warren-no-such-exchange", "x", b"x")
    with pytest.raises(CCBB) as ei:
        ch.tx_commit()
    assert_close(ei, 404, "NOT_FOUND - no exchange 'warren-no-such-exchange' in vhost '/'", 60, 40)


def test_tx_uncommitted_publishes_lost_on_channel_close(connection):
    tx, obs = connection.channel(), connection.channel()
    q = excl_queue(obs)
    tx.tx_select()
    tx.basic_publish("", q, b"never")
    sync(tx)
    tx.close()
    assert count(obs, q) == 0
